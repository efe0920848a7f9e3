package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/runloop"
	"github.com/mobiked/mobiked/policy"
)

func runDaemonCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestFlagConventions: -h and --version exit 0, bad values exit 2.
func TestFlagConventions(t *testing.T) {
	badWeb := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(badWeb, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"-h"}, exitOK, "", "-web.config.file"},
		{[]string{"--help"}, exitOK, "", "usage: mobiked"},
		{[]string{"--version"}, exitOK, "mobiked ", ""},
		{[]string{"--log-format", "yaml"}, exitConfig, "", "bad --log-format"},
		{[]string{"--metrics-listen", "9816"}, exitConfig, "", "bad --metrics-listen"},
		{[]string{"--metrics-listen", ":0"}, exitConfig, "", "bad --metrics-listen"},
		{[]string{"--web.config.file", badWeb}, exitConfig, "", "--web.config.file"},
		{[]string{"--bogus"}, exitConfig, "", "flag provided but not defined"},
	}
	for _, tc := range tests {
		code, out, errs := runDaemonCLI(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
			t.Errorf("mobiked %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, errs)
		}
	}
}

// TestLogFormat: --log-format json writes one JSON object a line with time,
// level, msg and the attributes (a message or value with a newline stays on
// its line), below --log-level nothing; text is logfmt.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, slog.LevelInfo, "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("steer confirmed", "conn", "lab", "uplink", "eth1")
	log.With("component", "vici").Warn("two\nlines", "err", errors.New("a\nb"))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (one a record):\n%s", len(lines), buf.String())
	}
	want := []map[string]string{
		{"level": "INFO", "msg": "steer confirmed", "conn": "lab", "uplink": "eth1"},
		{"level": "WARN", "msg": "two\nlines", "component": "vici", "err": "a\nb"},
	}
	for i, line := range lines {
		o, err := logObject(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		ts, _ := o["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %d: time %q: %v", i+1, o["time"], err)
		}
		for k, v := range want[i] {
			if o[k] != v {
				t.Errorf("line %d: %s = %v, want %q", i+1, k, o[k], v)
			}
		}
		if len(o) != len(want[i])+1 {
			t.Errorf("line %d: keys %v, want time and %v", i+1, o, want[i])
		}
	}

	for _, bad := range []string{`{"msg":"x","component":"vici","component":"vici"}`, `{"msg":"x"}{"msg":"y"}`, `msg=x`, `["x"]`} {
		if _, err := logObject(bad); err == nil {
			t.Errorf("logObject(%s) accepted it", bad)
		}
	}

	buf.Reset()
	for _, format := range []string{"text", "logfmt"} {
		log, err := newLogger(&buf, slog.LevelInfo, format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("steer confirmed", "conn", "lab")
	}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, ` level=INFO msg="steer confirmed" conn=lab`) {
			t.Errorf("text line %q, want logfmt", line)
		}
	}
}

// logObject decodes one line of a JSON log: exactly one object, each key
// once (slog's JSON handler writes a key as often as it is given).
func logObject(line string) (map[string]any, error) {
	var o map[string]any
	if err := json.Unmarshal([]byte(line), &o); err != nil {
		return nil, fmt.Errorf("not one JSON object (%w): %s", err, line)
	}
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := k.(string)
		if seen[key] {
			return nil, fmt.Errorf("key %q twice: %s", key, line)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{":9816": "[::]:9816", "127.0.0.1:9816": "127.0.0.1:9816", "[::1]:9816": "[::1]:9816"} {
		ap, err := parseListen(in)
		if err != nil || ap.String() != want {
			t.Errorf("parseListen(%q) = %v, %v; want %s", in, ap, err, want)
		}
	}
	if got := listenAddress(netip.MustParseAddrPort("[::]:9816")); got != ":9816" {
		t.Errorf("listenAddress([::]:9816) = %q, want :9816 (both families)", got)
	}
	for _, bad := range []string{"9816", ":", ":x", "1.2.3.4:0", ":70000"} {
		if _, err := parseListen(bad); err == nil {
			t.Errorf("parseListen(%q): no error", bad)
		}
	}
}

// TestDefaultConfig: without --config, DefaultConfig is read when it exists
// (a broken one stops the start, exit 2) and zero-config is used when it does
// not; an explicit --config that does not exist is an error.
func TestDefaultConfig(t *testing.T) {
	old := DefaultConfig
	t.Cleanup(func() { DefaultConfig = old })
	DefaultConfig = filepath.Join(t.TempDir(), "mobiked.yaml")
	if code, _, errs := runDaemonCLI("--check-config"); code != exitConfig || !strings.Contains(errs, "needs --config") {
		t.Fatalf("absent default: exit %d %s, want zero-config (check-config needs a file)", code, errs)
	}
	if err := os.WriteFile(DefaultConfig, []byte("hooks:\n  timeout: 5x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runDaemonCLI("--check-config"); code != exitConfig || !strings.Contains(errs, "mobiked.yaml:2: hooks.timeout") {
		t.Fatalf("present default: exit %d %s, want it read and rejected", code, errs)
	}
	if err := os.WriteFile(DefaultConfig, []byte("# zero-config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runDaemonCLI("--check-config"); code != exitOK || !strings.Contains(out, DefaultConfig+": ok") {
		t.Fatalf("present good default: exit %d %s", code, out)
	}
	if code, _, errs := runDaemonCLI("--check-config", "--config", DefaultConfig+".missing"); code != exitConfig || !strings.Contains(errs, "no such file") {
		t.Fatalf("explicit missing file: exit %d %s, want an error", code, errs)
	}
}

// TestSdNotify: READY=1 goes to $NOTIFY_SOCKET, and the watchdog pings at
// half of $WATCHDOG_USEC while the decision loop answers, and stops when it
// does not.
func TestSdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "")
	recv := func(timeout time.Duration) string {
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	cfg := policy.Default()
	d := &daemon{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	d.core = mobike.New(mobike.Config{Policy: cfg.Settings()})
	d.loop = runloop.New(d.core, d, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopCtx, stopLoop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.loop.Run(loopCtx) }()

	d.notifyReady()
	if got := recv(2 * time.Second); got != "READY=1" {
		t.Fatalf("notify socket got %q, want READY=1", got)
	}
	go d.watchdog(ctx)
	for i := 0; i < 3; i++ {
		if got := recv(2 * time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q, want WATCHDOG=1", i, got)
		}
	}
	stopLoop()
	<-done
	// A ping already in flight may still arrive; after it, silence.
	for range 2 {
		if got := recv(300 * time.Millisecond); got != "" && got != "WATCHDOG=1" {
			t.Fatalf("unexpected %q", got)
		}
	}
	if got := recv(1500 * time.Millisecond); got != "" {
		t.Fatalf("watchdog still pinging with the decision loop stopped: %q", got)
	}
}
