package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit.
// ExecStart names the installed binary (/usr/sbin/mobiked), which verify
// requires to exist, so the copy under test points it at this test's own
// executable; every other line is verified as shipped. Any diagnostic
// (unknown key, bad value) fails the test, not just a non-zero status.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the unit is verified where systemd is")
	}
	unit, err := os.ReadFile("../../deploy/systemd/mobiked.service")
	if err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/sbin/mobiked\n"
	if !strings.Contains(string(unit), installed) {
		t.Fatalf("unit has no %q line (no --config: /etc/mobiked/mobiked.yaml is read when it exists)", installed)
	}
	for _, want := range []string{
		"Type=notify\n", "WatchdogSec=", "NotifyAccess=main\n",
		"After=network-online.target strongswan.service strongswan-starter.service\n",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n",
		"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n",
		"RestartPreventExitStatus=2\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "Wants=strongswan") || strings.Contains(string(unit), "Requires=strongswan") {
		t.Errorf("unit pulls in a strongSwan unit that may not exist on this host (starter vs charon-systemd)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mobiked.service")
	patched := strings.Replace(string(unit), installed, "ExecStart="+self+"\n", 1)
	if err := os.WriteFile(path, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
