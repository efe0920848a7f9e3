package wire

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testdata/charon holds IKE_SA_INIT exchanges captured from strongSwan 5.9.8
// in the project lab (gw conn: aes128gcm16-prfsha256-x25519, encap = yes):
// the probe's request sent from 10.1.0.2 to 10.3.0.2:500 and charon's answer.
// The golden file is the messages' String form; refresh with -update.
var charonCaptures = []struct {
	name  string
	local netip.AddrPort // the request's source (from the capture)
}{
	{"accept", netip.MustParseAddrPort("10.1.0.2:40952")},
	{"invalidke", netip.MustParseAddrPort("10.1.0.2:53863")},
	{"noproposal", netip.MustParseAddrPort("10.1.0.2:55515")},
}

func readCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "charon", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCharonCaptures(t *testing.T) {
	var dump strings.Builder
	gw := netip.MustParseAddrPort("10.3.0.2:500")
	for _, c := range charonCaptures {
		for _, kind := range []string{"request", "response"} {
			raw := readCapture(t, c.name+"-"+kind+".bin")
			m, err := Parse(raw)
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, kind, err)
			}
			if b := mustMarshal(t, m); !bytes.Equal(b, raw) {
				t.Errorf("%s %s: re-encoding differs from charon's bytes", c.name, kind)
			}
			dump.WriteString(c.name + " " + kind + ": " + m.String() + "\n")
		}
		m, _ := Parse(readCapture(t, c.name+"-response.bin"))
		r, err := ParseInitResponse(m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		switch c.name {
		case "accept":
			if !r.Accepted() || r.Proposal.String() != DefaultIKEProposal().String() || r.KE.Group != DHCurve25519 {
				t.Errorf("accept: %+v", r)
			}
			nat := r.DetectNAT(c.local, gw)
			// charon with encap = yes fakes its source hash; our side is not NATed.
			if !nat.Checked || nat.LocalNAT || !nat.RemoteNAT {
				t.Errorf("accept: NAT %+v", nat)
			}
			if r.DetectNAT(netip.MustParseAddrPort("10.1.0.2:40953"), gw).LocalNAT != true {
				t.Error("another source port should look NATed")
			}
		case "invalidke":
			if r.Accepted() || r.Error != NotifyInvalidKEPayload || r.WantGroup != DHCurve25519 {
				t.Errorf("invalidke: %+v", r)
			}
		case "noproposal":
			if r.Accepted() || r.Error != NotifyNoProposalChosen {
				t.Errorf("noproposal: %+v", r)
			}
		}
	}
	golden := filepath.Join("testdata", "charon", "messages.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(dump.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if dump.String() != string(want) {
		t.Errorf("dump differs from %s:\n%s", golden, dump.String())
	}
}
