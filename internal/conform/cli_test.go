package conform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/internal/ikeudp"
	"github.com/mobiked/mobiked/mobike/ike/iketest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	if err := os.WriteFile(psk, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := ParseArgs([]string{"--peer", "10.3.0.2", "--peer", "10.4.0.2", "--local", "10.1.0.2, 10.2.0.2", "--psk-file", psk, "--id", "conform.lab", "--json"}, env(nil))
	if err != nil || len(o.Peers) != 2 || len(o.Locals) != 2 || string(o.PSK) != "secret" || o.ID.String() != "conform.lab" || !o.JSON {
		t.Fatalf("%+v %v", o, err)
	}
	o, err = ParseArgs([]string{"--peer", "10.3.0.2", "--local", "10.1.0.2"}, env(map[string]string{"MOBIKE_CONFORM_PSK": "k"}))
	if err != nil || string(o.PSK) != "k" || o.ID.String() != "10.1.0.2" || o.JSON {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	withPSK := env(map[string]string{"MOBIKE_CONFORM_PSK": "k"})
	for name, args := range map[string][]string{
		"no peer":        {"--local", "10.1.0.2"},
		"no local":       {"--peer", "10.3.0.2"},
		"three peers":    {"--peer", "10.3.0.2", "--peer", "10.3.0.3", "--peer", "10.3.0.4", "--local", "10.1.0.2"},
		"three locals":   {"--peer", "10.3.0.2", "--local", "10.1.0.2,10.1.0.3,10.1.0.4"},
		"bad peer":       {"--peer", "gw.example", "--local", "10.1.0.2"},
		"bad local":      {"--peer", "10.3.0.2", "--local", "10.1.0.2,x"},
		"families":       {"--peer", "10.3.0.2", "--local", "fd00::2"},
		"missing file":   {"--peer", "10.3.0.2", "--local", "10.1.0.2", "--psk-file", filepath.Join(dir, "nope")},
		"bad id":         {"--peer", "10.3.0.2", "--local", "10.1.0.2", "--id", "keyid:xyz"},
		"extra argument": {"--peer", "10.3.0.2", "--local", "10.1.0.2", "now"},
		"unknown flag":   {"--peer", "10.3.0.2", "--local", "10.1.0.2", "--nat"},
	} {
		if _, err := ParseArgs(args, withPSK); !errors.Is(err, ErrUsage) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseArgs([]string{"--peer", "10.3.0.2", "--local", "10.1.0.2"}, env(nil)); !errors.Is(err, ErrUsage) {
		t.Errorf("no psk: %v", err)
	}
}

// fakeListener is a fakeNet that can be closed.
type fakeListener struct{ *fakeNet }

func (fakeListener) Close() error { return nil }

func TestMainExitStatus(t *testing.T) {
	args := []string{"--peer", p1.String(), "--peer", p2.String(), "--local", l1.String() + "," + l2.String(), "--id", "conform.test"}
	e := env(map[string]string{"MOBIKE_CONFORM_PSK": string(psk)})
	for _, tc := range []struct {
		name string
		b    iketest.Behaviour
		json bool
		code int
	}{
		{"conforming, table", iketest.Behaviour{}, false, 0},
		{"conforming, json", iketest.Behaviour{}, true, 0},
		{"no mobike", iketest.Behaviour{NoMOBIKE: true}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNet(t, tc.b)
			var out, errb bytes.Buffer
			a := args
			if tc.json {
				a = append(append([]string{}, args...), "--json")
			}
			code, rep := Main(context.Background(), a, &out, &errb, Env{Getenv: e, Clock: &virtualClock{now: time.Unix(0, 0)},
				Listen: func(ikeudp.Config) (Listener, error) { return fakeListener{n}, nil }})
			if code != tc.code || rep == nil {
				t.Fatalf("exit %d, want %d: %s%s", code, tc.code, out.String(), errb.String())
			}
			if tc.json {
				var r Report
				if err := json.Unmarshal(out.Bytes(), &r); err != nil || len(r.Checks) != len(Specs) {
					t.Errorf("json: %v %s", err, out.String())
				}
			} else if !strings.Contains(out.String(), "CHECK") || !strings.Contains(out.String(), IDNegotiated) {
				t.Errorf("table: %s", out.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code, _ := Main(context.Background(), []string{"--peer", "x"}, &out, &errb, Env{Getenv: e}); code != 2 || !strings.Contains(errb.String(), "usage:") {
		t.Errorf("usage error: %d %q", code, errb.String())
	}
	out.Reset()
	if code, _ := Main(context.Background(), []string{"-h"}, &out, &errb, Env{Getenv: e}); code != 0 || !strings.Contains(out.String(), "Exit status") {
		t.Errorf("help: %d", code)
	}
	errb.Reset()
	fail := func(ikeudp.Config) (Listener, error) { return nil, errors.New("no such address") }
	if code, rep := Main(context.Background(), args, &out, &errb, Env{Getenv: e, Listen: fail}); code != 1 || rep != nil || !strings.Contains(errb.String(), "no such address") {
		t.Errorf("listen error: %d %q", code, errb.String())
	}
}
