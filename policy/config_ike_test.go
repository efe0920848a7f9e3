package policy

import (
	"strings"
	"testing"
)

// TestLoadProbeMethods: every probe method the daemon implements is accepted
// by name and reaches the connection's policy; other names are problems.
func TestLoadProbeMethods(t *testing.T) {
	tests := []struct {
		probe   string
		want    Method
		problem string
	}{
		{"icmp", MethodICMP, ""},
		{"stamp", MethodSTAMP, ""},
		{"ike", MethodIKE, ""},
		{"IKE", 0, `unknown probe method "IKE" (want icmp, stamp or ike)`},
		{"ping", 0, `unknown probe method "ping" (want icmp, stamp or ike)`},
	}
	for _, tc := range tests {
		t.Run(tc.probe, func(t *testing.T) {
			doc := "connections:\n  - name: office\n    probe: " + tc.probe + "\n"
			c, err := Load("probe.yaml", []byte(doc))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("Load(probe: %s) = %v, want problem %q", tc.probe, err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(probe: %s): %v", tc.probe, err)
			}
			if got := c.Conn("office").Probe; got != tc.want {
				t.Fatalf("conn probe = %s, want %s", got, tc.want)
			}
			if got := c.Settings().Conn("office").Method; got != tc.want {
				t.Fatalf("policy method = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestValidateProbeMethodRange: a config built in code with a method past
// MethodIKE is rejected.
func TestValidateProbeMethodRange(t *testing.T) {
	c := Default()
	c.Default.Probe = MethodIKE
	if err := c.Validate(); err != nil {
		t.Fatalf("ike rejected: %v", err)
	}
	c.Default.Probe = MethodIKE + 1
	if err := c.Validate(); err == nil {
		t.Fatal("method past ike accepted")
	}
}
