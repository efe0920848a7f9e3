package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/runloop"
	"github.com/mobiked/mobiked/monitor/probe"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if labBinDir != "" {
		_ = os.RemoveAll(labBinDir)
	}
	os.Exit(code)
}

const goodConfig = `uplinks:
  - name: eth0
    priority: 300
  - name: eth1
    priority: 200
connections:
  - name: lab
    peer_addresses: [10.4.0.2]
    hold_down: 5s
probes:
  active_interval: 200ms
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mobiked.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckConfig: --check-config exits 2 on a broken file and names every
// problem with its line; a good file exits 0.
func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		code  int
		want  []string // each must appear in stderr
		lines int      // number of problem lines, when checked
	}{
		{name: "good", body: goodConfig, code: exitOK},
		{name: "empty file is zero-config", body: "# nothing\n", code: exitOK},
		{name: "policy conflict is a warning", body: "uplinks:\n  - name: eth0\n  - name: eth1\nconnections:\n  - name: lab\n    uplinks: [eth0]\n    peer_addresses: [10.4.0.2]\n  - name: lab2\n    uplinks: [eth1]\n    peer_addresses: [10.4.0.2]\n",
			code: exitOK, want: []string{"warning: ", ":9: connections[1].uplinks: policy conflict: lab2 shares peer address 10.4.0.2 with lab"}},
		{name: "bad yaml", body: "uplinks: [\n", code: exitConfig, want: []string{":1: "}},
		{name: "tab indentation", body: "uplinks:\n\t- name: eth0\n", code: exitConfig, want: []string{":2: "}},
		{name: "unknown key", body: "uplinks:\n  - name: eth0\n    bogus: 1\n", code: exitConfig,
			want: []string{`:3: uplinks[0].bogus: unknown key "bogus"`}},
		{name: "unknown top-level key", body: "probez: {}\n", code: exitConfig, want: []string{`:1: `, `"probez"`}},
		{name: "bad duration", body: "connections:\n  - name: lab\n    hold_down: 5x\n", code: exitConfig,
			want: []string{`:3: connections[0].hold_down: bad duration "5x"`}},
		{name: "unknown uplink", body: "uplinks:\n  - name: eth0\nconnections:\n  - name: lab\n    uplinks: [wlan9]\n", code: exitConfig,
			want: []string{`:5: connections[0].uplinks[0]: unknown uplink "wlan9"`}},
		{name: "priority out of range", body: "uplinks:\n  - name: eth0\n    priority: 5000\n", code: exitConfig,
			want: []string{`:3: uplinks[0].priority: priority 5000 out of range`}},
		{name: "duplicate connection", body: "connections:\n  - name: lab\n  - name: lab\n", code: exitConfig,
			want: []string{`:3: `, `duplicate connection "lab" (first at line 2)`}},
		{name: "bad nat and probe", body: "connections:\n  - name: lab\n    nat: maybe\n    probe: carrier-pigeon\n", code: exitConfig,
			want: []string{`:3: `, `bad nat value "maybe"`, `:4: `, `unknown probe method "carrier-pigeon"`}},
		// issue 13, finding 6: what start-up (the steerer) refuses, --check-config refuses
		{name: "rule band too narrow for the steerer", body: "steering:\n  rule_priority: {min: 1000, max: 1020}\n", code: exitConfig,
			want: []string{`:2: steering.rule_priority: rule priority band 1000..1020 has 21 priorities, need at least 51`}},
		{name: "table among the uplink tables", body: "steering:\n  table: 2110\n", code: exitConfig,
			want: []string{`:2: steering.table: table 2110 is one of mobiked's uplink tables`}},
		// issue 13, finding 5
		{name: "interval that overflows", body: "probes:\n  standby_interval: 2562047h\n", code: exitConfig,
			want: []string{`:2: probes.standby_interval: interval 2562047h0m0s out of range 10ms..1h0m0s`}},
		{
			name: "every problem reported",
			body: `uplinks:
  - name: eth0
    priority: 5000
  - name: eth0
    bogus: 1
connections:
  - name: lab
    hold_down: 5x
    uplinks: [wlan9]
  - name: lab
probes:
  timeout: -1s
`,
			code:  exitConfig,
			lines: 7,
			want: []string{
				":3: uplinks[0].priority: priority 5000 out of range",
				`:4: uplinks[1]: duplicate uplink "eth0" (first at line 2)`,
				`:5: uplinks[1].bogus: unknown key "bogus"`,
				`:8: connections[0].hold_down: bad duration "5x"`,
				`:9: connections[0].uplinks[0]: unknown uplink "wlan9"`,
				`:10: connections[1].name: duplicate connection "lab" (first at line 7)`,
				`:12: probes.timeout: timeout -1s out of range`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			var stdout, stderr bytes.Buffer
			code := run([]string{"--check-config", "--config", path}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), path+w) && !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
			if tc.code == exitOK && !strings.Contains(stdout.String(), path+": ok") {
				t.Errorf("stdout %q, want %q", &stdout, path+": ok")
			}
			if tc.code != exitOK {
				// one line per problem, each naming the file and a line
				for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
					if !strings.HasPrefix(l, path+":") {
						t.Errorf("problem line without file:line: %q", l)
					}
				}
				if n := strings.Count(stderr.String(), "\n"); tc.lines > 0 && n != tc.lines {
					t.Errorf("%d problem lines, want %d:\n%s", n, tc.lines, &stderr)
				}
			}
		})
	}
}

func TestCheckConfigUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--check-config"}, // no file
		{"--check-config", "--config", "/nonexistent/mobiked.yaml"}, // unreadable
		{"--bogus-flag"},
		{"--log-level", "loud", "--check-config", "--config", "x"},
		{"extra-arg"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitConfig {
			t.Errorf("run %q: exit %d, want %d (stderr %s)", args, code, exitConfig, &stderr)
		}
		if stderr.Len() == 0 {
			t.Errorf("run %q: no message", args)
		}
	}
}

// TestReloadKeepsConfigOnError: SIGHUP's reload with a broken file keeps the
// running config; a good file replaces it and reaches the core.
func TestReloadKeepsConfigOnError(t *testing.T) {
	path := writeConfig(t, goodConfig)
	var logBuf bytes.Buffer
	d, ctx := startReloadDaemon(t, path, &logBuf)
	conns := mobike.EvConns{Conns: []mobike.Conn{{Name: "lab", RemoteAddrs: []netip.Addr{netip.MustParseAddr("10.3.0.2")}}}}
	if err := d.loop.Do(ctx, func() { d.loop.Step(ctx, conns) }); err != nil {
		t.Fatal(err)
	}
	holdDown := func() time.Duration {
		t.Helper()
		var hd time.Duration
		var running *time.Duration
		if err := d.loop.Do(ctx, func() {
			for _, c := range d.core.Snapshot().Conns {
				if c.Name == "lab" {
					hd = c.Policy.HoldDown
				}
			}
			for _, c := range d.cfg.Conns {
				if c.Name == "lab" {
					h := c.HoldDown
					running = &h
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
		if running == nil || *running != hd {
			t.Fatalf("daemon config and core disagree: %v vs %s", running, hd)
		}
		return hd
	}
	if got := holdDown(); got != 5*time.Second {
		t.Fatalf("hold-down %s at start, want 5s", got)
	}

	// A broken file: the old config stays.
	if err := os.WriteFile(path, []byte(strings.Replace(goodConfig, "hold_down: 5s", "hold_down: 7x", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	old := d.cfg
	d.reload(ctx)
	if got := holdDown(); got != 5*time.Second || d.cfg != old {
		t.Fatalf("bad reload changed the config (hold-down %s)", got)
	}
	if !strings.Contains(logBuf.String(), "keeping the running config") || !strings.Contains(logBuf.String(), `bad duration \"7x\"`) {
		t.Errorf("bad reload not logged with its problem:\n%s", &logBuf)
	}

	// A good file: applied.
	if err := os.WriteFile(path, []byte(strings.Replace(goodConfig, "hold_down: 5s", "hold_down: 9s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.reload(ctx)
	if got := holdDown(); got != 9*time.Second {
		t.Fatalf("good reload: hold-down %s, want 9s", got)
	}

	// What needs a restart is refused by name, the rest applied.
	d.probes = probe.NewManager(probe.Options{})
	defer d.probes.Close()
	d.trace = newTraceRing(16)
	logBuf.Reset()
	body := strings.Replace(goodConfig, "hold_down: 5s", "hold_down: 9s", 1)
	body = strings.Replace(body, "active_interval: 200ms", "active_interval: 100ms", 1)
	body += "steering:\n  table: 2200\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	d.reload(ctx)
	var table uint32
	var active time.Duration
	_ = d.loop.Do(ctx, func() { table, active = d.cfg.Steering.Table, d.cfg.Probes.ActiveInterval })
	if table != 2100 || active != 100*time.Millisecond {
		t.Errorf("after reload: table %d (want the running 2100), active interval %s (want 100ms)", table, active)
	}
	if !strings.Contains(logBuf.String(), "needs a restart: steering-changed: table") {
		t.Errorf("refused change not named:\n%s", &logBuf)
	}
}

// startReloadDaemon runs a daemon with only its core and loop (enough for
// reload) on the config at path, logging to logBuf, until the test ends.
func startReloadDaemon(t *testing.T, path string, logBuf *bytes.Buffer) (*daemon, context.Context) {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{f: flags{config: path}, cfg: cfg, log: slog.New(slog.NewTextHandler(logBuf, nil))}
	d.core = mobike.New(mobike.Config{Policy: cfg.Settings()})
	d.loop = runloop.New(d.core, d, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- d.loop.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, ctx
}
