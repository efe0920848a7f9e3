package monitor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseUevent(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Uevent
	}{
		{"wlan", "DEVTYPE=wlan\nINTERFACE=wlan0\nIFINDEX=3\n", Uevent{Interface: "wlan0", IfIndex: 3, DevType: "wlan"}},
		{"wwan", "DEVTYPE=wwan\nINTERFACE=wwan0\nIFINDEX=7", Uevent{Interface: "wwan0", IfIndex: 7, DevType: "wwan"}},
		{"ethernet has no devtype", "INTERFACE=eth0\nIFINDEX=2\n", Uevent{Interface: "eth0", IfIndex: 2}},
		{"upper case devtype", "DEVTYPE=WLAN\n", Uevent{DevType: "wlan"}},
		{"first key wins", "IFINDEX=4\nIFINDEX=5\nDEVTYPE=wlan\nDEVTYPE=wwan\n", Uevent{IfIndex: 4, DevType: "wlan"}},
		{"malformed", "garbage\nIFINDEX=x\n=\nINTERFACE\n", Uevent{}},
		{"negative index", "IFINDEX=-3\n", Uevent{}},
		{"value with equals", "INTERFACE=a=b\n", Uevent{Interface: "a=b"}},
		{"empty", "", Uevent{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseUevent([]byte(tc.in)); got != tc.want {
				t.Errorf("ParseUevent(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseUevent(f *testing.F) {
	for _, s := range []string{
		"DEVTYPE=wlan\nINTERFACE=wlan0\nIFINDEX=3\n",
		"INTERFACE=eth0\nIFINDEX=2\n",
		"DEVTYPE=wwan\nINTERFACE=wwan0\nIFINDEX=99999999999999999999\n",
		"=\n\n=x\nIFINDEX=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u := ParseUevent(data)
		if u.IfIndex < 0 {
			t.Errorf("negative index %d", u.IfIndex)
		}
		if u.DevType != strings.ToLower(u.DevType) {
			t.Errorf("devtype %q not lower case", u.DevType)
		}
		if strings.ContainsRune(u.Interface, '\n') || strings.ContainsRune(u.DevType, '\n') {
			t.Errorf("value spans lines: %+v", u)
		}
		if len(data) <= maxUevent && u.Interface != "" && !strings.Contains(string(data), "INTERFACE="+u.Interface) {
			t.Errorf("interface %q not in input", u.Interface)
		}
	})
}

func TestReadSysfs(t *testing.T) {
	root := t.TempDir()
	mk := func(name, uevent string, dirs ...string) {
		d := filepath.Join(root, name)
		for _, sub := range append([]string{""}, dirs...) {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(uevent), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("wlan0", "DEVTYPE=wlan\nINTERFACE=wlan0\nIFINDEX=3\n", "wireless")
	mk("wlp2s0", "INTERFACE=wlp2s0\nIFINDEX=4\n", "phy80211")
	mk("wwan0", "DEVTYPE=wwan\nINTERFACE=wwan0\nIFINDEX=5\n")
	mk("eth0", "INTERFACE=eth0\nIFINDEX=2\n")

	tests := []struct {
		name     string
		index    int
		devType  string
		wireless bool
		ok       bool
	}{
		{"wlan0", 3, "wlan", true, true},
		{"wlp2s0", 4, "", true, true},
		{"wwan0", 5, "wwan", false, true},
		{"eth0", 2, "", false, true},
		{"eth0", 7, "", false, false}, // another namespace's eth0
		{"missing", 9, "", false, false},
		{"../wlan0", 3, "", false, false},
		{"..", 3, "", false, false},
	}
	for _, tc := range tests {
		dt, wl, ok := readSysfsAt(root, tc.name, tc.index)
		if dt != tc.devType || wl != tc.wireless || ok != tc.ok {
			t.Errorf("readSysfsAt(%q, %d) = %q, %v, %v; want %q, %v, %v", tc.name, tc.index, dt, wl, ok, tc.devType, tc.wireless, tc.ok)
		}
	}
}
