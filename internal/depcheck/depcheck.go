// Package depcheck enforces the architecture in tests (style.md H20): the
// sans-IO core and the pure policy package must not depend on I/O packages.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Check fails t when pkg has an I/O package anywhere in its dependency
// closure (net beyond net/netip, os/exec, log/slog, net/http,
// golang.org/x/sys, netlink, govici, Prometheus), or when a package of this
// module it depends on imports os or syscall directly (the standard
// library's fmt imports os itself, which is fine).
func Check(t testing.TB, pkg string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports ","}}`, pkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, " ")
		if Banned(path) {
			t.Errorf("%s depends on %s", pkg, path)
		}
		if !strings.HasPrefix(path, "github.com/mobiked/mobiked/") {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if imp == "os" || imp == "syscall" {
				t.Errorf("%s imports %s", path, imp)
			}
		}
	}
}

// Banned reports whether a package does I/O.
func Banned(d string) bool {
	switch d {
	case "net", "os/exec", "log/slog", "net/http":
		return true
	}
	for _, p := range []string{"golang.org/x/sys/", "github.com/vishvananda/", "github.com/strongswan/", "github.com/prometheus/", "net/http/"} {
		if strings.HasPrefix(d, p) {
			return true
		}
	}
	return false
}
