package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

func runOut(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebPackage builds the Debian package with `make deb` (nfpm through go
// run), checks its metadata and layout (dpkg-deb), unpacks it into a scratch
// root (dpkg -x), runs the packaged binaries there, and, as root, runs the
// lab with the packaged mobiked and asks the packaged mobikectl for doctor.
func TestDebPackage(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "dpkg", "make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the package is built and checked on Debian", tool)
		}
	}
	out := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-C", root, "deb", "DEB_OUT="+out, "DEB_BUILD="+filepath.Join(out, "build"))
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "mobiked_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one mobiked_*.deb", debs)
	}
	deb := debs[0]
	rev := strings.TrimSpace(runOut(t, root, "git", "rev-parse", "HEAD"))

	// Control fields.
	fields := runOut(t, "", "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends")
	for _, want := range []string{"Package: mobiked", "Depends: strongswan-swanctl, strongswan-charon | charon-systemd"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control lacks %q:\n%s", want, fields)
		}
	}
	ver := regexp.MustCompile(`(?m)^Version: (\S+)$`).FindStringSubmatch(fields)
	if ver == nil || !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`).MatchString(ver[1]) {
		t.Fatalf("Version field %v is not a Debian version", ver)
	}
	if !strings.Contains(filepath.Base(deb), "_"+ver[1]+"_") {
		t.Errorf("file name %s does not carry version %s", deb, ver[1])
	}

	// Layout: path -> mode.
	listing := runOut(t, "", "dpkg-deb", "-c", deb)
	want := map[string]string{
		"./usr/sbin/mobiked":                                 "-rwxr-xr-x",
		"./usr/bin/mobikectl":                                "-rwxr-xr-x",
		"./usr/bin/mobike-conform":                           "-rwxr-xr-x",
		"./lib/systemd/system/mobiked.service":               "-rw-r--r--",
		"." + deploy.CharonConfPath:                          "-rw-r--r--",
		"./etc/mobiked/mobiked.yaml":                         "-rw-r-----",
		"./usr/share/doc/mobiked/copyright":                  "-rw-r--r--",
		"./usr/share/doc/mobiked/README.md":                  "-rw-r--r--",
		"./usr/share/doc/mobiked/deploy.md":                  "-rw-r--r--",
		"./usr/share/doc/mobiked/METRICS.md":                 "-rw-r--r--",
		"./usr/share/doc/mobiked/conformance.md":             "-rw-r--r--",
		"./usr/share/doc/mobiked/examples/mobiked.yaml":      "-rw-r--r--",
		"./usr/share/bash-completion/completions/mobikectl":  "-rw-r--r--",
		"./usr/share/mobiked/grafana/mobiked-dashboard.json": "-rw-r--r--",
		"./usr/share/mobiked/prometheus/mobiked-rules.yaml":  "-rw-r--r--",
	}
	got := map[string]string{}
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		got[f[len(f)-1]] = f[0]
		if owner := f[1]; owner != "root/root" {
			t.Errorf("%s owned by %s, want root/root", f[len(f)-1], owner)
		}
	}
	for p, mode := range want {
		if got[p] != mode {
			t.Errorf("%s: mode %q, want %q", p, got[p], mode)
		}
	}
	for p := range got {
		if strings.Contains(p, "strongswan.d/charon/") {
			t.Errorf("%s: charon's settings inside strongswan.d/charon/ are read as plugin settings", p)
		}
	}

	// conffiles: config files are not overwritten on upgrade.
	ctl := t.TempDir()
	runOut(t, "", "dpkg-deb", "-e", deb, ctl)
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{deploy.CharonConfPath, "/etc/mobiked/mobiked.yaml"} {
		if !strings.Contains(string(conffiles), c+"\n") {
			t.Errorf("conffiles lacks %s:\n%s", c, conffiles)
		}
	}

	// Unpack into a scratch root and run what was packaged.
	sroot := t.TempDir()
	runOut(t, "", "dpkg", "-x", deb, sroot)
	mobiked := filepath.Join(sroot, "usr/sbin/mobiked")
	mobikectl := filepath.Join(sroot, "usr/bin/mobikectl")
	for _, bin := range []string{mobiked, mobikectl, filepath.Join(sroot, "usr/bin/mobike-conform")} {
		v := runOut(t, "", bin, "--version")
		if !strings.Contains(v, ver[1]) || !strings.Contains(v, "revision "+rev[:12]) {
			t.Errorf("%s --version = %q, want version %s and revision %s", filepath.Base(bin), v, ver[1], rev[:12])
		}
	}
	if v := runOut(t, "", mobiked, "--check-config", "--config", filepath.Join(sroot, "etc/mobiked/mobiked.yaml")); !strings.Contains(v, ": ok") {
		t.Errorf("packaged mobiked.yaml: %s", v)
	}
	if v := runOut(t, "", mobiked, "--check-config", "--config", filepath.Join(sroot, "usr/share/doc/mobiked/examples/mobiked.yaml")); !strings.Contains(v, ": ok") {
		t.Errorf("packaged example: %s", v)
	}
	if b, err := os.ReadFile(filepath.Join(sroot, deploy.CharonConfPath)); err != nil || string(b) != deploy.MobikedConf {
		t.Errorf("packaged %s differs from deploy/strongswan.d/mobiked.conf (%v)", deploy.CharonConfPath, err)
	}
	if b, err := exec.Command("ldd", mobiked).CombinedOutput(); err == nil || !bytes.Contains(b, []byte("not a dynamic executable")) {
		t.Errorf("packaged mobiked is not static: ldd says %s", b)
	}

	// The lab runs the packaged binaries.
	t.Run("lab", func(t *testing.T) {
		lab.RequireRoot(t)
		const name = "ddeb"
		l, err := lab.Up(ctx, lab.Options{Name: name, Controller: true, ControllerConf: deploy.MobikedConf, DPD: 5 * time.Second,
			StartController: func(ctx context.Context, l *lab.Lab) (int, error) { return l.StartMobiked(ctx, mobiked, "") }})
		if err != nil {
			t.Fatalf("lab up with the packaged mobiked: %v", err)
		}
		t.Cleanup(func() { _ = lab.Down(context.Background(), name) })
		var last string
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			b, err := l.Exec(ctx, "mn", mobikectl, "--socket", l.MobikedSocket(), "doctor")
			last = string(b)
			if err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, want := range []string{"OK    charon-settings", "OK    charon-fwmark-rule", "OK    conn lab", "OK    mobiked                " + ver[1]} {
			if !strings.Contains(last, want) {
				t.Errorf("packaged mobikectl doctor lacks %q:\n%s", want, last)
			}
		}
		b, err := l.Exec(ctx, "mn", mobikectl, "status", "--json", "--socket", l.MobikedSocket())
		if err != nil || !strings.Contains(string(b), `"conn": "lab"`) {
			t.Errorf("packaged mobikectl status --json: %v\n%s", err, b)
		}
	})
}
