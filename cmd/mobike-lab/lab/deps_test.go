package lab_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// makefilePackages reads DEB_PKGS from the project's Makefile.
func makefilePackages(t *testing.T) []string { return makefileList(t, "DEB_PKGS") }

// makefileList reads the list variable name from the project's Makefile.
func makefileList(t *testing.T, name string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*:?=\s*(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("Makefile has no %s line", name)
	}
	return strings.Fields(string(m[1]))
}

// ownerPackage returns the Debian package that ships path (dpkg -S), trying
// the name without /usr too: with merged /usr dpkg knows /sbin/sysctl, not
// /usr/sbin/sysctl.
func ownerPackage(path string) string {
	for _, p := range []string{path, strings.TrimPrefix(path, "/usr")} {
		if out, err := exec.Command("dpkg", "-S", p).Output(); err == nil {
			return strings.TrimSpace(strings.SplitN(string(out), ":", 2)[0])
		}
	}
	return ""
}

// essential reports whether pkg is Essential (on every Debian, minbase too).
func essential(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Essential}", pkg).Output()
	return err == nil && strings.TrimSpace(string(out)) == "yes"
}

// hardDeps returns pkgs and everything they Depend or Pre-Depend on,
// transitively (only the first alternative of an "a | b" counts: apt installs
// that one).
func hardDeps(t *testing.T, pkgs []string) map[string]bool {
	t.Helper()
	have := map[string]bool{}
	queue := slices.Clone(pkgs)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if have[p] {
			continue
		}
		have[p] = true
		out, err := exec.Command("dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", p).Output()
		if err != nil {
			continue // not installed: its dependencies are unknown here
		}
		for _, dep := range strings.Split(string(out), ",") {
			first := strings.TrimSpace(strings.Split(dep, "|")[0])
			name := strings.Fields(first + " ")
			if len(name) == 0 {
				continue
			}
			queue = append(queue, strings.Split(name[0], ":")[0])
		}
	}
	return have
}

// TestPluginPackages maps every charon plugin the lab loads to the Debian
// package that ships it (dpkg -S) and fails when `make deps` would not install
// that package, directly or as a hard dependency. A package that is only
// recommended (libstrongswan-standard-plugins by libstrongswan) is missing on
// a fresh machine, since deps installs with --no-install-recommends.
func TestPluginPackages(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not found: the lab supports Debian only")
	}
	listed := makefilePackages(t)
	installed := hardDeps(t, listed)
	for _, p := range lab.Plugins() {
		want, ok := lab.PluginPackages[p]
		if !ok {
			t.Errorf("plugin %s: not in lab.PluginPackages", p)
			continue
		}
		out, err := exec.Command("dpkg", "-S", lab.PluginFile(p)).Output()
		if err != nil {
			t.Errorf("plugin %s: dpkg -S %s: %v (run make deps)", p, lab.PluginFile(p), err)
			continue
		}
		got := strings.TrimSpace(strings.SplitN(string(out), ":", 2)[0])
		if got != want {
			t.Errorf("plugin %s: shipped by %s, lab.PluginPackages says %s", p, got, want)
		}
		if !installed[got] {
			t.Errorf("plugin %s: package %s is neither in the Makefile's DEB_PKGS %v nor a hard dependency of one", p, got, listed)
		}
	}
}

// TestUpNamesMissingPluginPackage: with a plugin missing, up says which
// package to install before it creates anything.
func TestUpNamesMissingPluginPackage(t *testing.T) {
	dir := t.TempDir()
	for _, p := range lab.Plugins() {
		if p == "gcm" {
			continue
		}
		if err := os.WriteFile(lab.PluginFileIn(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := lab.PluginDir
	lab.PluginDir = dir
	defer func() { lab.PluginDir = old }()
	err := lab.CheckTools()
	if err == nil || !strings.Contains(err.Error(), "libstrongswan-standard-plugins") || !strings.Contains(err.Error(), "gcm") {
		t.Fatalf("CheckTools with gcm missing = %v, want the plugin and its package named", err)
	}
}

// TestToolPackages: each program the lab runs (lab.Tools) comes from a
// package in the Makefile's DEB_PKGS, a hard dependency of one, or an
// essential package; the C compiler that `make test`'s -race needs (cgo)
// from DEB_DEV_PKGS likewise. A fresh Debian 12 (minbase) has no procps
// (sysctl) and no gcc, which only .ci/fresh-check would otherwise show.
func TestToolPackages(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not found: the lab supports Debian only")
	}
	pkgs := makefilePackages(t)
	dev := makefileList(t, "DEB_DEV_PKGS")
	check := func(tool string, installed map[string]bool, list string) {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Errorf("%s: not on PATH (run make deps)", tool)
			return
		}
		pkg := ownerPackage(path)
		if pkg == "" {
			if r, err := filepath.EvalSymlinks(path); err == nil {
				pkg = ownerPackage(r)
			}
		}
		switch {
		case pkg == "":
			t.Errorf("%s (%s): no package ships it (dpkg -S)", tool, path)
		case !installed[pkg] && !essential(pkg):
			t.Errorf("%s: package %s is neither in the Makefile's %s nor a hard dependency of one nor essential", tool, pkg, list)
		}
	}
	runtimeDeps := hardDeps(t, pkgs)
	for _, tool := range lab.Tools {
		check(tool, runtimeDeps, "DEB_PKGS")
	}
	cc := "gcc"
	if out, err := exec.Command("go", "env", "CC").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		cc = strings.TrimSpace(string(out))
	}
	check(cc, hardDeps(t, append(slices.Clone(pkgs), dev...)), "DEB_PKGS or DEB_DEV_PKGS")
}
