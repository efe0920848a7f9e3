package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWarningsPolicyConflict(t *testing.T) {
	path := filepath.Join("testdata", "warnings", "conflict.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.String())
	}
	want := []string{
		path + ":5: connections[0].nat: policy conflict: (connections not listed) shares peer address 10.4.0.2 with lab2 (one steering group, one pair, chosen for lab2, listed first), but lab2 has nat forbid and (connections not listed) nat allow",
		path + ":11: connections[2].uplinks: policy conflict: lab2 shares peer address 10.4.0.2 with lab (one steering group, one pair, chosen for lab, listed first), but their uplinks [eth0] and [eth1] have none in common",
		path + ":12: connections[2].nat: policy conflict: lab2 shares peer address 10.4.0.2 with lab (one steering group, one pair, chosen for lab, listed first), but lab has nat allow and lab2 nat forbid",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The lab's own config has none.
	if ws := Default().Warnings(); len(ws) != 0 {
		t.Errorf("default config: %v", ws)
	}
}

// TestWarningsTimeoutBounds: bounds of the adaptive timeout next to a fixed
// timeout do nothing; the operator is told so, and only then.
func TestWarningsTimeoutBounds(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"fixed with bounds", "probes:\n  timeout: 100ms\n  min_timeout: 25ms\n  max_timeout: 1s\n", []string{
			"x.yaml:3: probes.min_timeout: ignored: probes.timeout 100ms is a fixed timeout; the bounds apply to the adaptive one",
			"x.yaml:4: probes.max_timeout: ignored: probes.timeout 100ms is a fixed timeout; the bounds apply to the adaptive one",
		}},
		{"adaptive with bounds", "probes:\n  min_timeout: 25ms\n", nil},
		{"fixed alone", "probes:\n  timeout: 100ms\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load("x.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range c.Warnings() {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
