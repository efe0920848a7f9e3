package deploy_test

import (
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/mobiked/mobiked/deploy"
)

// installTarget reads every `cp deploy/strongswan.d/mobiked.conf DEST` of a
// document and returns the installed file paths (DEST/ + mobiked.conf for a
// directory).
func installTargets(text string) []string {
	var out []string
	re := regexp.MustCompile(`cp\s+(?:\S*/)?deploy/strongswan\.d/mobiked\.conf\s+(\S+)`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		dst := strings.Trim(m[1], "`")
		if strings.HasSuffix(dst, "/") {
			dst = path.Join(dst, "mobiked.conf")
		}
		out = append(out, dst)
	}
	return out
}

// TestDocsInstallPath: every place that tells users where charon's settings
// go names deploy.CharonConfPath, the path the lab installs them at (and its
// tests therefore check charon honours): the README, the deployment guide,
// the snippet's own header and the package. A doc that says
// /etc/strongswan.d/charon/ (charon would read the snippet inside
// charon.plugins and ignore it) fails here.
func TestDocsInstallPath(t *testing.T) {
	for _, doc := range []string{"../README.md", "../docs/deploy.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		targets := installTargets(string(b))
		if len(targets) == 0 {
			t.Errorf("%s: no `cp deploy/strongswan.d/mobiked.conf DEST` instruction", doc)
		}
		for _, dst := range targets {
			if dst != deploy.CharonConfPath {
				t.Errorf("%s installs charon's settings as %s, want %s", doc, dst, deploy.CharonConfPath)
			}
		}
	}
	if !strings.Contains(deploy.MobikedConf, "Install as "+deploy.CharonConfPath) {
		t.Errorf("deploy/strongswan.d/mobiked.conf's header does not say %q", "Install as "+deploy.CharonConfPath)
	}
	nfpm, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`src: deploy/strongswan\.d/mobiked\.conf\s+dst: ` + regexp.QuoteMeta(deploy.CharonConfPath) + `\n`).Match(nfpm) {
		t.Errorf("nfpm.yaml does not install deploy/strongswan.d/mobiked.conf as %s", deploy.CharonConfPath)
	}
}

func TestInstallTargets(t *testing.T) {
	got := installTargets("cp deploy/strongswan.d/mobiked.conf /etc/strongswan.d/charon/   # x\n`cp ./deploy/strongswan.d/mobiked.conf /etc/strongswan.d/mobiked.conf`")
	want := []string{"/etc/strongswan.d/charon/mobiked.conf", "/etc/strongswan.d/mobiked.conf"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("installTargets = %v, want %v", got, want)
	}
}
