package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
)

// fakeDaemon serves the control API on a unix socket with canned answers.
func fakeDaemon(t *testing.T, doc control.Doctor) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mobiked.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(control.Status{CharonUp: true, At: at, SAs: []control.SARow{
			{Conn: "lab", ID: 1, State: "ESTABLISHED", Initiator: true, Local: "10.1.0.2:4500", Remote: "10.3.0.2:4500", Uplink: "eth0", Why: "best"}}})
	})
	mux.HandleFunc("GET /v1/doctor", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(doc) })
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, _ *http.Request) {
		enc := json.NewEncoder(w)
		_ = enc.Encode(control.Event{At: at, Kind: "SteerRequested", Text: "lab a>b"})
		_ = enc.Encode(control.Event{At: at, Kind: "SteerConfirmed", Text: "lab on b"})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sock
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestFlagsAnywhere: global flags work before and after the command (the
// issue's `mobikectl status --json` failed with the flag package).
func TestFlagsAnywhere(t *testing.T) {
	sock := fakeDaemon(t, control.Doctor{})
	for _, args := range [][]string{
		{"status", "--json", "--socket", sock},
		{"--json", "status", "--socket", sock},
		{"--socket", sock, "--json", "status"},
		{"--socket=" + sock, "status", "--json"},
	} {
		code, out, errs := runCLI(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		var st control.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.SAs) != 1 || st.SAs[0].Uplink != "eth0" {
			t.Fatalf("%v: not the status JSON: %v\n%s", args, err, out)
		}
	}
	code, out, _ := runCLI("status", "--socket", sock)
	if code != 0 || !strings.Contains(out, "CONN") || !strings.Contains(out, "eth0") {
		t.Fatalf("status table: exit %d\n%s", code, out)
	}
}

// TestEventsJSON: `events --json` prints one JSON object a line.
func TestEventsJSON(t *testing.T) {
	sock := fakeDaemon(t, control.Doctor{})
	code, out, errs := runCLI("events", "--json", "--socket", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var ev control.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Kind == "" {
			t.Fatalf("line %q is not an event: %v", l, err)
		}
	}
	code, out, _ = runCLI("events", "--socket", sock)
	if code != 0 || !strings.Contains(out, "SteerConfirmed") || strings.Contains(out, "{") {
		t.Fatalf("events text: exit %d\n%s", code, out)
	}
}

// TestDoctorExit: a failed check makes doctor exit 1, warnings do not; JSON
// carries the same checks.
func TestDoctorExit(t *testing.T) {
	fail := control.Doctor{Checks: []control.Check{
		{Name: "vici", Status: control.CheckOK, Detail: "charon 5.9.8"},
		{Name: "charon-settings", Status: control.CheckFail, Detail: "charon.prefer_best_path is not set", Hint: "install /etc/strongswan.d/mobiked.conf"},
	}}
	sock := fakeDaemon(t, fail)
	code, out, errs := runCLI("doctor", "--socket", sock)
	if code != 1 || !strings.Contains(out, "FAIL  charon-settings") || !strings.Contains(out, "/etc/strongswan.d/mobiked.conf") ||
		!strings.Contains(errs, "1 check(s) failed") {
		t.Fatalf("doctor with a failed check: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, _ = runCLI("doctor", "--json", "--socket", sock)
	var d control.Doctor
	if code != 1 || json.Unmarshal([]byte(out), &d) != nil || len(d.Checks) != 2 || !d.Failed() {
		t.Fatalf("doctor --json: exit %d\n%s", code, out)
	}
	warn := control.Doctor{Checks: []control.Check{{Name: "probes", Status: control.CheckWarn, Detail: "eth1 → 10.4.0.2 down"}}}
	if code, out, _ := runCLI("doctor", "--socket", fakeDaemon(t, warn)); code != 0 || !strings.Contains(out, "WARN") {
		t.Fatalf("doctor with a warning: exit %d\n%s", code, out)
	}
}

// TestConventions: help and version exit 0, usage errors exit 2, an
// unreachable daemon exits 1, completion scripts are generated.
func TestConventions(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("uplinks: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"--help"}, 0, "Available Commands", ""},
		{[]string{"-h"}, 0, "doctor", ""},
		{[]string{"help", "prefer"}, 0, "--for duration", ""},
		{[]string{"prefer", "--help"}, 0, "prefer CONN UPLINK", ""},
		{[]string{"--version"}, 0, "mobikectl ", ""},
		{[]string{"version"}, 0, "(revision ", ""},
		{[]string{"completion", "bash"}, 0, "bash completion", ""},
		{[]string{"completion", "zsh"}, 0, "compdef", ""},
		{[]string{}, 2, "Available Commands", "no command given"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"status", "extra"}, 2, "", "unknown command"},
		{[]string{"explain"}, 2, "", "accepts 1 arg"},
		{[]string{"status", "--bogus"}, 2, "", "unknown flag: --bogus"},
		{[]string{"prefer", "lab", "eth1", "--for", "soon"}, 2, "", "invalid argument"},
		{[]string{"check-config", bad}, 2, "", "bad.yaml:1"},
		{[]string{"status", "--socket", "/nonexistent/mobiked.sock"}, 1, "", "is mobiked running"},
	}
	for _, tc := range tests {
		code, out, errs := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
			t.Errorf("mobikectl %v: exit %d, want %d\nstdout:\n%.400s\nstderr:\n%s", tc.args, code, tc.code, out, errs)
		}
	}
}
