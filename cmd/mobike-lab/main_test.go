package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

func TestMain(m *testing.M) {
	lab.ServeDelayLineIfAsked() // the bench's slowpath re-executes the test binary as a delay line
	os.Exit(m.Run())
}

func TestCLIBadInput(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown path", []string{"impair", "--name", "nolab", "--path", "c", "--blackhole"}, 2, `unknown path "c"`},
		{"no path", []string{"impair", "--blackhole"}, 2, "--path is required"},
		{"two impairments", []string{"impair", "--path", "a", "--blackhole", "--link-down"}, 2, "exactly one"},
		{"bad nat", []string{"impair", "--path", "b", "--nat", "maybe"}, 2, "on or off"},
		{"jitter above delay", []string{"impair", "--path", "a", "--delay", "10ms", "--jitter", "20ms"}, 2, "jitter ≤ delay"},
		{"jitter without delay", []string{"impair", "--path", "a", "--jitter", "5ms"}, 2, "--jitter needs --delay"},
		{"delay and loss", []string{"impair", "--path", "a", "--delay", "10ms", "--loss", "5"}, 2, "exactly one"},
		{"delay too long", []string{"impair", "--path", "a", "--delay", "11s"}, 2, "delay + jitter ≤ 10s"},
		{"unknown flag", []string{"up", "--bogus"}, 2, "flag provided but not defined"},
		{"exec unknown node", []string{"exec", "--name", "nolab", "xx", "--", "true"}, 2, `unknown node "xx"`},
		{"status of absent lab", []string{"status", "--name", "nolab"}, 1, "lab nolab is not up"},
		{"bad name", []string{"down", "--name", "Bad/Name"}, 1, "may only contain"},
		{"conform of absent lab", []string{"conform", "--name", "nolab"}, 1, "lab nolab is not up"},
		{"conform extra argument", []string{"conform", "now"}, 2, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("stderr %q does not mention %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func TestCLIDownOfAbsentLabSucceeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ip netns)")
	}
	var out, errb bytes.Buffer
	if code := run([]string{"down", "--name", "nolab"}, &out, &errb); code != 0 {
		t.Fatalf("down of absent lab: exit %d: %s", code, errb.String())
	}
}
