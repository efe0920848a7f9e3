package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

func checkNamed(d control.Doctor, name string) []control.Check {
	var out []control.Check
	for _, c := range d.Checks {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func doctorText(d control.Doctor) string {
	var b strings.Builder
	for _, c := range d.Checks {
		b.WriteString(string(c.Status) + " " + c.Name + ": " + c.Detail + "\n")
	}
	return b.String()
}

// TestLabDoctorAndHook: in a lab set up as the docs say, `doctor` finds
// nothing wrong, and an operator move runs the on_move hook with the move in
// its environment. In a lab whose charon lacks mobiked's settings
// (mobike-lab up --controller --charon-defaults), doctor fails and names each
// missing setting and the missing inverted-fwmark rule.
func TestLabDoctorAndHook(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("as documented", func(t *testing.T) {
		dir := t.TempDir()
		envFile := filepath.Join(dir, "moves")
		hook := filepath.Join(dir, "on-move")
		if err := os.WriteFile(hook, []byte("#!/bin/sh\nenv | grep ^MOBIKED_ | sort >> "+envFile+"\necho --- >> "+envFile+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := lab.LabMobikedConfig + "hooks:\n  on_move: " + hook + "\n  timeout: 5s\n"
		r := upRig(t, ctx, "ddoc", cfg, lab.Options{})
		r.operational(ctx, 15*time.Second, 4)
		d, err := r.c.Doctor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Failed() {
			t.Fatalf("doctor failed on a lab set up as documented:\n%s", doctorText(d))
		}
		for _, name := range []string{"vici", "charon-settings", "charon-fwmark-rule", "conn lab", "foreign-entries", "uplinks", "paths lab"} {
			cs := checkNamed(d, name)
			if len(cs) != 1 || (cs[0].Status != control.CheckOK && name != "paths lab") {
				t.Errorf("check %q = %+v, want one ok line\n%s", name, cs, doctorText(d))
			}
		}
		// The exporter-toolkit listener: landing page, health, Go and
		// process collectors, _info gauges at 1 (the SA rows appear with the
		// first publish, within a second).
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, body, _ := r.l.MobikedHTTP(ctx, "/metrics"); strings.Contains(string(body), "mobike_sas{") {
				break
			}
		}
		for path, want := range map[string]string{"/": "mobiked", "/livez": "ok", "/readyz": "ok",
			"/metrics": `mobike_sa_uplink_info{conn="lab",uplink="eth0"} 1`} {
			code, body, err := r.l.MobikedHTTP(ctx, path)
			if err != nil || code != 200 || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %d %v, want 200 with %q:\n%.300s", path, code, err, want, body)
			}
		}
		if _, body, _ := r.l.MobikedHTTP(ctx, "/metrics"); !strings.Contains(string(body), "\ngo_goroutines ") ||
			!strings.Contains(string(body), "\nprocess_cpu_seconds_total ") || !strings.Contains(string(body), "\nmobike_sas{") {
			t.Errorf("/metrics lacks go_goroutines, process_cpu_seconds_total or mobike_sas")
		}
		// An operator move: confirmed by charon, then the hook runs.
		if err := r.c.Prefer(ctx, control.PreferRequest{Conn: "lab", Uplink: "eth1"}); err != nil {
			t.Fatal(err)
		}
		r.sa(ctx, 15*time.Second, "SA on uplink b after prefer", func(s lab.SAInfo) bool { return s.LocalHost == lab.MNAddrB.String() })
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(envFile)
			if got = string(b); strings.Contains(got, "---") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, want := range []string{"MOBIKED_EVENT=move", "MOBIKED_CONN=lab", "MOBIKED_OLD_LOCAL=10.1.0.2", "MOBIKED_NEW_LOCAL=10.2.0.2",
			"MOBIKED_OLD_UPLINK=eth0", "MOBIKED_UPLINK=eth1", "MOBIKED_CAUSE=manual"} {
			if !strings.Contains(got, want+"\n") {
				t.Errorf("hook environment lacks %s:\n%s", want, got)
			}
		}
	})

	t.Run("charon defaults", func(t *testing.T) {
		r := upRig(t, ctx, "ddocd", "", lab.Options{CharonDefaults: true})
		d, err := r.c.Doctor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Failed() {
			t.Fatalf("doctor passed although charon runs without mobiked's settings:\n%s", doctorText(d))
		}
		text := doctorText(d)
		for _, want := range []string{
			"fail charon-settings: charon.prefer_best_path is not set",
			"fail charon-settings: charon.plugins.kernel-netlink.fwmark is not set",
			"fail charon-settings: charon.plugins.kernel-netlink.process_rules is not set",
			"fail charon-fwmark-rule: charon's rule is `lookup 220` without `not fwmark 0x42`",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("doctor does not say %q:\n%s", want, text)
			}
		}
		for _, c := range checkNamed(d, "charon-settings") {
			if !strings.Contains(c.Hint, "/etc/strongswan.d/mobiked.conf") {
				t.Errorf("hint %q does not name the install path", c.Hint)
			}
		}
		// charon goes away: not ready, still alive (the kubelet must not
		// restart mobiked for charon's sake), and doctor says why.
		if err := r.l.StopCharon(ctx, "mn"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		code := 0
		for time.Now().Before(deadline) {
			if code, _, _ = r.l.MobikedHTTP(ctx, "/readyz"); code == 503 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code != 503 {
			t.Errorf("/readyz = %d with charon stopped, want 503", code)
		}
		if code, body, err := r.l.MobikedHTTP(ctx, "/livez"); err != nil || code != 200 {
			t.Errorf("/livez = %d %v %s with charon stopped, want 200", code, err, body)
		}
		if d, err := r.c.Doctor(ctx); err != nil || !strings.Contains(doctorText(d), "fail vici: charon not reachable") {
			t.Errorf("doctor with charon stopped (%v):\n%s", err, doctorText(d))
		}
	})
}
