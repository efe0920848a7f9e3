package ike_test

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/wire"
	"github.com/mobiked/mobiked/monitor/probe/ike"
)

type labProbe struct {
	name   string
	local  netip.Addr
	dev    string
	remote netip.AddrPort
	props  []wire.Proposal
	group  wire.DHGroup

	nat       mobike.NATVerdict
	accepted  bool
	errNotify wire.NotifyType
	lastGroup wire.DHGroup
}

var (
	gw4 = netip.MustParseAddrPort("10.3.0.2:500")
	gw6 = netip.MustParseAddrPort("[fd00:3::2]:500")

	uplinkA = labProbe{name: "a", local: netip.MustParseAddr("10.1.0.2"), dev: "eth0", remote: gw4,
		nat: mobike.NATNone, accepted: true}
	uplinkB = labProbe{name: "b", local: netip.MustParseAddr("10.2.0.2"), dev: "eth1", remote: gw4,
		nat: mobike.NATNone, accepted: true}
)

// TestProbeAgainstCharon sends the probe's IKE_SA_INIT from the uplinks of
// the lab's mn namespace to the real charon on gw (aes128gcm16-prfsha256-
// x25519) and checks that charon accepts the proposal, that the NAT verdict
// follows the router's masquerading of uplink b, and that charon's error
// responses (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD) are understood.
func TestProbeAgainstCharon(t *testing.T) {
	lab.RequireRoot(t)
	natB := uplinkB
	natB.nat = mobike.NATPresent
	v6 := uplinkA
	v6.name, v6.local, v6.remote = "a-ipv6", netip.MustParseAddr("fd00:1::2"), gw6
	// No gateway connection accepts PRF HMAC-SHA1 (the conformance
	// connection does accept AES-CBC with SHA2-256).
	cbc := wire.Proposal{Num: 1, Protocol: wire.ProtocolIKE, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: []wire.Attribute{wire.KeyLength(256)}},
		{Type: wire.TransformPRF, ID: wire.PRFHMACSHA1},
		{Type: wire.TransformINTEG, ID: wire.IntegSHA256},
		{Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)},
	}}
	noProposal := uplinkA
	noProposal.name, noProposal.props = "a-no-proposal-chosen", []wire.Proposal{cbc}
	noProposal.nat, noProposal.accepted, noProposal.errNotify = mobike.NATUnknown, false, wire.NotifyNoProposalChosen
	// Offer P-256 and X25519 with a P-256 key share: charon wants X25519
	// (INVALID_KE_PAYLOAD), the probe retries with it and is accepted.
	twoGroups := wire.DefaultIKEProposal()
	twoGroups.Transforms = append(twoGroups.Transforms, wire.Transform{Type: wire.TransformDH, ID: uint16(wire.DHECP256)})
	invalidKE := uplinkA
	invalidKE.name, invalidKE.props, invalidKE.group, invalidKE.lastGroup = "a-invalid-ke", []wire.Proposal{twoGroups}, wire.DHECP256, wire.DHCurve25519

	for _, tc := range []struct {
		name   string
		natB   bool
		probes []labProbe
	}{
		{"hw1", false, []labProbe{uplinkA, uplinkB, v6, noProposal, invalidKE}},
		{"hw2", true, []labProbe{uplinkA, natB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			l, err := lab.Up(ctx, lab.Options{Name: tc.name, NoSA: true, NATB: tc.natB})
			if err != nil {
				t.Fatalf("lab up: %v", err)
			}
			defer l.Close(context.Background())
			for _, p := range tc.probes {
				t.Run(p.name, func(t *testing.T) { runLabProbe(ctx, t, l, p) })
			}
			if tc.name == "hw1" {
				t.Run("refused-leaves-no-state", func(t *testing.T) { checkRefusedStateless(ctx, t, l) })
			}
		})
	}
}

func runLabProbe(ctx context.Context, t *testing.T, l *lab.Lab, p labProbe) {
	var res ike.Result
	err := lab.InNetNS(l.NS("mn"), func() error {
		var err error
		res, err = ike.Probe(ctx, ike.Config{
			Local:     netip.AddrPortFrom(p.local, 0), // ephemeral: charon in mn owns 500/4500
			Device:    p.dev,
			Remote:    p.remote,
			Timeout:   5 * time.Second,
			Proposals: p.props,
			Group:     p.group,
		})
		return err
	})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	t.Logf("reachable=%v rtt=%v nat=%v peerNAT=%v local=%v group=%v cookies=%d",
		res.Reachable, res.RTT, res.NAT, res.PeerNAT, res.Local, res.Group, res.Cookies)
	if !res.Reachable || res.Response == nil {
		t.Fatalf("no IKE_SA_INIT response from charon: %+v", res)
	}
	r := res.Response
	if r.Accepted() != p.accepted || r.Error != p.errNotify {
		t.Fatalf("accepted=%v error=%v, want accepted=%v error=%v (notifies %v)", r.Accepted(), r.Error, p.accepted, p.errNotify, r.Notifies)
	}
	if p.accepted {
		if r.Proposal.String() != wire.DefaultIKEProposal().String() || r.KE.Group != wire.DHCurve25519 || len(r.KE.Data) != 32 || r.SPIr.IsZero() {
			t.Errorf("charon chose %v, KE %v/%d octets, SPIr %v", r.Proposal, r.KE.Group, len(r.KE.Data), r.SPIr)
		}
	}
	if p.lastGroup != 0 && res.Group != p.lastGroup {
		t.Errorf("last key share group %v, want %v", res.Group, p.lastGroup)
	}
	if res.Local.Addr() != p.local || res.Local.Port() == 0 {
		t.Errorf("sent from %v, want %v:ephemeral", res.Local, p.local)
	}
	if res.NAT != p.nat {
		t.Errorf("NAT verdict %v, want %v", res.NAT, p.nat)
	}
}

// checkRefusedStateless: every accepted probe leaves a half-open IKE SA on
// charon for 30 s, and charon ignores IKE_SA_INITs from a peer address with
// block_threshold (5) of them ("per-IP half-open IKE_SA limit of 5 reached"
// in its log: mobiked's IKE prober took healthy pairs down that way). Probes
// offering only ike.RefusedProposal are answered with NO_PROPOSAL_CHOSEN and
// leave none: charon's half-open count (swanctl --stats) does not grow over
// eight of them, and grows by one with one accepted probe.
func checkRefusedStateless(ctx context.Context, t *testing.T, l *lab.Lab) {
	probe := func(props []wire.Proposal) ike.Result {
		t.Helper()
		var res ike.Result
		err := lab.InNetNS(l.NS("mn"), func() error {
			var err error
			res, err = ike.Probe(ctx, ike.Config{Local: netip.AddrPortFrom(uplinkB.local, 0), Device: uplinkB.dev, Remote: gw4,
				Timeout: time.Second, Proposals: props})
			return err
		})
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return res
	}
	halfOpen := func() int {
		t.Helper()
		out, err := l.Exec(ctx, "gw", "swanctl", "--stats", "--uri", "unix://"+l.VICISocket("gw"))
		if err != nil {
			t.Fatalf("swanctl --stats: %v\n%s", err, out)
		}
		m := halfOpenRE.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no half-open count in swanctl --stats:\n%s", out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	before := halfOpen()
	for i := range 8 {
		res := probe([]wire.Proposal{ike.RefusedProposal()})
		if !res.Reachable || res.Response == nil || res.Response.Accepted() || res.Response.Error != wire.NotifyNoProposalChosen {
			t.Fatalf("refused probe %d: %+v, want a NO_PROPOSAL_CHOSEN response", i+1, res)
		}
		if res.NAT != mobike.NATUnknown {
			t.Errorf("refused probe %d: NAT verdict %v, want unknown (no NAT-D)", i+1, res.NAT)
		}
	}
	afterRefused := halfOpen()
	if res := probe(nil); !res.Reachable || res.Response == nil || !res.Response.Accepted() {
		t.Fatalf("accepted probe: %+v", res)
	}
	afterAccepted := halfOpen()
	t.Logf("charon's half-open IKE SAs: %d before, %d after eight refused probes, %d after one accepted", before, afterRefused, afterAccepted)
	if afterRefused > before {
		t.Errorf("refused probes left half-open SAs: %d -> %d", before, afterRefused)
	}
	if afterAccepted != afterRefused+1 {
		t.Errorf("an accepted probe took the half-open count from %d to %d, want +1 (the count this check relies on)", afterRefused, afterAccepted)
	}
}

var halfOpenRE = regexp.MustCompile(`IKE_SAs: \d+ total, (\d+) half-open`)
