package ike_test

import (
	"context"
	"net/netip"
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
