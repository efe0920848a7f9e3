package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/mobiked/mobiked/policy"
)

// TestCheckConfigHostileFiles (issue 13, finding 4): a config path that is a
// device, a FIFO or a huge file is refused at once by --check-config, start
// and reload alike, without reading it all.
func TestCheckConfigHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 2<<20/10), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero": "not a regular file",
		fifo:        "not a regular file",
		big:         "larger than",
		dir:         "not a regular file",
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"--check-config", "--config", path}, &stdout, &stderr); code != exitConfig || !strings.Contains(stderr.String(), want) {
			t.Errorf("--check-config %s: exit %d, stderr %q; want %d and %q", path, code, &stderr, exitConfig, want)
		}
	}
}

// TestCheckConfigAgreesWithSteerer (issue 13, finding 6): over a grid of
// tables and rule bands, every config policy accepts is one the steerer
// accepts at start (configure, shared by --check-config, start and reload,
// runs both, so a config that passes --check-config cannot fail there).
func TestCheckConfigAgreesWithSteerer(t *testing.T) {
	var accepted, refused int
	for _, table := range []uint32{1, 219, 220, 221, 253, 2100, 2101, 2130, 2164, 2165, 1 << 31, 1<<32 - 1} {
		for _, lo := range []int{220, 221, 1000, 32714, 32715, 32765} {
			for _, hi := range []int{lo - 1, lo, lo + 1, lo + 49, lo + 50, lo + 51, 32765, 32766} {
				body := fmt.Sprintf("steering:\n  table: %d\n  rule_priority: {min: %d, max: %d}\n", table, lo, hi)
				cfg, perr := policy.Load("grid.yaml", []byte(body))
				if perr != nil {
					refused++
					continue
				}
				accepted++
				if err := steerOptions(cfg, nil).Check(); err != nil {
					t.Errorf("policy accepts table %d band %d..%d, the steerer refuses it: %v", table, lo, hi, err)
				}
				path := writeConfig(t, body)
				if _, err := configure(flags{config: path}); err != nil {
					t.Errorf("configure refuses what policy accepts (table %d band %d..%d): %v", table, lo, hi, err)
				}
			}
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("grid degenerate: %d accepted, %d refused", accepted, refused)
	}
}

// TestReloadAliasBombKeepsConfig (issue 13, finding 4): SIGHUP with an alias
// bomb (the 24 KB shape: 4 004 references to a connection with 1 000
// bad peer addresses) keeps the running config, says how many problems it
// left out, and costs little memory.
func TestReloadAliasBombKeepsConfig(t *testing.T) {
	path := writeConfig(t, goodConfig)
	var logBuf bytes.Buffer
	d, ctx := startReloadDaemon(t, path, &logBuf)
	var b strings.Builder
	b.WriteString("connections: [&c {name: c, peer_addresses: [x" + strings.Repeat(",x", 999) + "]}")
	b.WriteString(strings.Repeat(",*c", 4004) + "]\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	old := d.cfg
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d.reload(ctx)
	runtime.ReadMemStats(&after)
	if d.cfg != old {
		t.Fatal("reload of a bomb replaced the running config")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	if !strings.Contains(logBuf.String(), "keeping the running config") || !strings.Contains(logBuf.String(), "more problems") {
		t.Errorf("reload not refused with a capped problem list:\n%.2000s", &logBuf)
	}
	if alloc > 64<<20 {
		t.Fatalf("reload of a %d-octet bomb allocated %.1f MiB", b.Len(), float64(alloc)/(1<<20))
	}
	t.Logf("reload of a %d-octet bomb: refused, %.1f MiB allocated, %d log octets", b.Len(), float64(alloc)/(1<<20), logBuf.Len())
}

// TestCheckConfigFlagOverrides: the flags' overrides are checked like the
// file (a relative --control-socket would fail at start).
func TestCheckConfigFlagOverrides(t *testing.T) {
	path := writeConfig(t, goodConfig)
	for _, args := range [][]string{
		{"--control-socket", "relative.sock"},
		{"--control-socket", "/" + strings.Repeat("x", 200)},
		{"--metrics-listen", "nonsense"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"--check-config", "--config", path}, args...), &stdout, &stderr); code != exitConfig {
			t.Errorf("%q: exit %d (%s%s), want %d", args, code, &stdout, &stderr, exitConfig)
		}
	}
}
