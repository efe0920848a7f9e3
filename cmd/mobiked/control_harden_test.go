package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobiked/mobiked/policy"
)

// TestControlSocketOnlyReplacesSockets (issue 13, finding 7): mobiked only
// ever unlinks a stale socket at control.socket; a regular file, a symlink or
// a directory there is refused and left alone, a live socket is "in use".
func TestControlSocketOnlyReplacesSockets(t *testing.T) {
	dir := t.TempDir()
	serve := func(path string) error {
		cfg := policy.Default()
		cfg.ControlSocket = path
		d := &daemon{cfg: cfg, trace: newTraceRing(4), log: slog.New(slog.DiscardHandler)}
		srv, err := d.serveControl(context.Background())
		if err == nil {
			srv.Close()
		}
		return err
	}
	file := filepath.Join(dir, "precious.conf")
	os.WriteFile(file, []byte("keep me\n"), 0o644)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(file, link)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	for path, want := range map[string]string{file: "not a socket", link: "not a socket", sub: "not a socket"} {
		err := serve(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("control socket at %s: %v, want %q", path, err, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me\n" {
		t.Fatalf("the regular file was replaced: %q %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v %v", fi, err)
	}
	// a stale socket (nobody listening) is replaced
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := serve(stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	// a live one is in use
	live := filepath.Join(dir, "live.sock")
	l, err = net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := serve(live); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("live socket: %v, want in use", err)
	}
}
