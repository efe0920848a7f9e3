package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps policy pure (style.md H20): no I/O packages anywhere in its
// dependency closure (net beyond net/netip, os/exec, log/slog, net/http,
// golang.org/x/sys, netlink, govici, Prometheus), and no direct import of os
// or syscall by any package of this module it depends on (the standard
// library's fmt imports os itself, which is fine).
func TestDeps(t *testing.T) {
	checkDeps(t, "github.com/mobiked/mobiked/policy")
}

func checkDeps(t *testing.T, pkg string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports ","}}`, pkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, " ")
		if banned(path) {
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

func banned(d string) bool {
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
