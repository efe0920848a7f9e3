package main

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// debianLike is Debian 12's /etc/strongswan.conf layout with the lab's
// snippet installed as the docs say (/etc/strongswan.d/mobiked.conf).
func debianLike(snippetDir string) fstest.MapFS {
	snippet, err := os.ReadFile("../../deploy/strongswan.d/mobiked.conf")
	if err != nil {
		panic(err)
	}
	return fstest.MapFS{
		"etc/strongswan.conf": {Data: []byte(`# strongswan.conf - strongSwan configuration file
charon {
	load_modular = yes
	plugins {
		include strongswan.d/charon/*.conf
	}
}

include strongswan.d/*.conf
`)},
		"etc/strongswan.d/charon-logging.conf":        {Data: []byte("charon {\n  filelog {\n  }\n}\n")},
		"etc/strongswan.d/charon/kernel-netlink.conf": {Data: []byte("kernel-netlink {\n    load = yes\n    # fwmark =\n}\n")},
		"etc/" + snippetDir + "/mobiked.conf":         {Data: snippet},
	}
}

// TestSwConfInstallPath: the snippet at the documented path sets charon's
// keys; at the path the README once gave (strongswan.d/charon/), charon reads
// it inside charon.plugins and none of mobiked's settings take effect.
func TestSwConfInstallPath(t *testing.T) {
	c, err := loadSwConf(debianLike("strongswan.d"), "etc/strongswan.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"charon.prefer_best_path":                     "yes",
		"charon.plugins.kernel-netlink.fwmark":        "!0x42",
		"charon.plugins.kernel-netlink.process_rules": "yes",
		"charon.plugins.kernel-netlink.load":          "yes",
		"charon.load_modular":                         "yes",
	}
	for k, v := range want {
		if got, _ := c.get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if missing := charonSettingsMissing(c); len(missing) != 0 {
		t.Errorf("missing %v with the snippet at the documented path", missing)
	}
	wrong, err := loadSwConf(debianLike("strongswan.d/charon"), "etc/strongswan.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := wrong.get("charon.plugins.charon.prefer_best_path"); !ok {
		t.Errorf("snippet in strongswan.d/charon/ not read inside charon.plugins: %v", slices.Sorted(maps.Keys(wrong.values)))
	}
	missing := charonSettingsMissing(wrong)
	if len(missing) != 3 {
		t.Errorf("missing = %v, want the three settings charon does not default to", missing)
	}
	// Settings whose default mobiked needs: reported only when written
	// otherwise.
	for _, tc := range []struct {
		conf string
		want []string
	}{
		{"charon { process_route = no }", []string{"charon.process_route"}},
		{"charon { plugins { kernel-netlink { roam_events = no } } }", []string{"charon.plugins.kernel-netlink.roam_events"}},
		{"charon { process_route = yes\n plugins { kernel-netlink { roam_events = 1 } } }", nil},
	} {
		fsys := debianLike("strongswan.d")
		fsys["etc/strongswan.d/zz-local.conf"] = &fstest.MapFile{Data: []byte(tc.conf + "\n")}
		c, err := loadSwConf(fsys, "etc/strongswan.conf")
		if err != nil {
			t.Fatal(err)
		}
		if got := charonSettingsMissing(c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: missing %v, want %v", tc.conf, got, tc.want)
		}
	}
}

func TestSwConfSyntax(t *testing.T) {
	fsys := fstest.MapFS{"a.conf": {Data: []byte(`
charon.prefer_best_path = yes   # dotted key
charon {
  plugins { kernel-netlink { fwmark = !0x42 } }
  name = "quoted # not a comment \" and \
continued"
  empty =
}
connections {
  lab : base, other {
    mobike = no
    local_addrs = 10.1.0.2, 10.2.0.2
  }
}
include "b.conf"
include missing/*.conf
`)}, "b.conf": {Data: []byte("charon.prefer_best_path = no\n")}}
	c, err := loadSwConf(fsys, "a.conf")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"charon.prefer_best_path":              "no", // the later include wins
		"charon.plugins.kernel-netlink.fwmark": "!0x42",
		"charon.name":                          "quoted # not a comment \" and continued",
		"charon.empty":                         "",
		"connections.lab.mobike":               "no",
		"connections.lab.local_addrs":          "10.1.0.2, 10.2.0.2",
	} {
		if got, ok := c.get(k); !ok || got != v {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if s := c.sections("connections"); !slices.Equal(s, []string{"lab"}) {
		t.Errorf("sections = %v", s)
	}
	for _, bad := range []string{"charon {\n", "}\n", "charon\n", `x = "open`, "include\n"} {
		if _, err := loadSwConf(fstest.MapFS{"x.conf": {Data: []byte(bad)}}, "x.conf"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	loop := fstest.MapFS{"x.conf": {Data: []byte("include x.conf\n")}}
	if _, err := loadSwConf(loop, "x.conf"); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("self-include: %v", err)
	}
}

// FuzzSwConf: the parser never panics and terminates on any input.
func FuzzSwConf(f *testing.F) {
	for _, s := range []string{"charon { a = b }\n", "include x\n", "a.b.c = \"x\\\"y\"\n", "s : t { k = v # c\n}\n"} {
		f.Add([]byte(s))
	}
	snippet, _ := os.ReadFile("../../deploy/strongswan.d/mobiked.conf")
	f.Add(snippet)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{"x.conf": {Data: data}, "y.conf": {Data: data}}
		c, err := loadSwConf(fsys, "x.conf")
		if err == nil {
			_ = charonSettingsMissing(c)
		}
	})
}
