package ike_test

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/ike/iketest"
	"github.com/mobiked/mobiked/mobike/proto"
	"github.com/mobiked/mobiked/mobike/wire"
)

var _ proto.Crypto = (*ike.Initiator)(nil)

var (
	t0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	psk    = []byte("a pre-shared key for tests")
	local  = netip.MustParseAddrPort("192.0.2.10:40000")
	local2 = netip.MustParseAddrPort("192.0.2.20:40001")
	gw     = netip.MustParseAddrPort("198.51.100.1:500")
)

func seeded(seed byte) *mrand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

// rig runs proto + Initiator against an iketest.Gateway over a lossless
// in-memory path.
type rig struct {
	t    *testing.T
	now  time.Time
	peer *proto.Peer
	in   *ike.Initiator
	gw   *iketest.Gateway
	obs  []proto.Output
	sent [][]byte // every datagram the initiator sent
	drop bool     // drop the initiator's datagrams
}

func newRig(t *testing.T, icfg ike.Config, b iketest.Behaviour) *rig {
	t.Helper()
	if icfg.Rand == nil {
		icfg.Rand = seeded(1)
	}
	if icfg.PSK == nil {
		icfg.PSK = psk
	}
	if icfg.ID.Data == nil {
		icfg.ID, _ = ike.ParseID("conform.test")
	}
	in, err := ike.NewInitiator(icfg)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := ike.ParseID("gw.test")
	p, err := proto.New(proto.Config{Role: proto.Initiator, MOBIKE: true, NATT: true, Rand: seeded(2), Crypto: in,
		KeepLocalPort: true, LocalAddrs: []netip.Addr{local.Addr(), local2.Addr()}, RetransmitTimeout: time.Second, RetransmitTries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, now: t0, peer: p, in: in, gw: &iketest.Gateway{PSK: psk, ID: gid, Rand: seeded(3), B: b}}
}

func (r *rig) apply(outs []proto.Output, err error) {
	r.t.Helper()
	if err != nil && !errors.Is(err, proto.ErrClosed) {
		r.t.Fatal(err)
	}
	for _, o := range outs {
		s, ok := o.(proto.Send)
		if !ok {
			r.obs = append(r.obs, o)
			continue
		}
		if s.Raw == nil {
			r.t.Fatalf("send without encoded bytes: %v", s)
		}
		r.sent = append(r.sent, s.Raw)
		if r.drop {
			continue
		}
		resp, err := r.gw.Handle(s.Raw, s.Src, s.Dst)
		if errors.Is(err, iketest.ErrIgnored) {
			continue
		}
		if err != nil {
			r.t.Fatalf("gateway: %v", err)
		}
		m, err := r.in.Open(resp)
		if err != nil {
			r.t.Fatalf("open %x: %v", resp, err)
		}
		r.apply(r.peer.Handle(r.now, proto.Packet{Src: s.Dst, Dst: s.Src, Msg: m, Raw: resp}), nil)
	}
}

func (r *rig) start() {
	r.t.Helper()
	r.apply(r.peer.Start(r.now, proto.Pair{Local: local, Remote: gw}))
}

func find[T proto.Output](obs []proto.Output) (T, bool) {
	for _, o := range obs {
		if x, ok := o.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}

func TestHandshakeSuites(t *testing.T) {
	cbc := ike.Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}
	gcm256 := ike.Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA256, Group: wire.DHECP256}
	for _, tc := range []struct {
		name    string
		cfg     ike.Config
		b       iketest.Behaviour
		want    string
		retries int
	}{
		{"default", ike.Config{}, iketest.Behaviour{}, "aes128gcm16-prfsha256-x25519", 0},
		{"cbc", ike.Config{Proposals: []wire.Proposal{ike.Proposal(cbc)}}, iketest.Behaviour{}, "aes256-sha256-prfsha256-x25519", 0},
		{"ecp256 first", ike.Config{Proposals: []wire.Proposal{ike.Proposal(gcm256)}, Group: wire.DHECP256}, iketest.Behaviour{}, "aes256gcm16-prfsha256-ecp256", 0},
		{"invalid ke", ike.Config{}, iketest.Behaviour{Group: wire.DHECP256}, "aes128gcm16-prfsha256-ecp256", 1},
		{"cookie", ike.Config{}, iketest.Behaviour{RequireCookie: true}, "aes128gcm16-prfsha256-x25519", 1},
		{"cookie and invalid ke", ike.Config{}, iketest.Behaviour{RequireCookie: true, Group: wire.DHECP256}, "aes128gcm16-prfsha256-ecp256", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.cfg, tc.b)
			r.start()
			est, ok := find[proto.Established](r.obs)
			if !ok || !est.MOBIKE {
				t.Fatalf("not established with MOBIKE: %v", r.obs)
			}
			if got := r.in.Suite().String(); got != tc.want {
				t.Errorf("suite %s, want %s", got, tc.want)
			}
			if r.in.Retries() != tc.retries {
				t.Errorf("%d retries, want %d", r.in.Retries(), tc.retries)
			}
			if r.in.PeerID().String() != "gw.test" {
				t.Errorf("peer id %s", r.in.PeerID())
			}
			// M5 with an ephemeral local port: only the remote port floats.
			if want := (proto.Pair{Local: local, Remote: netip.AddrPortFrom(gw.Addr(), 4500)}); est.Pair != want {
				t.Errorf("ike pair %s, want %s", est.Pair, want)
			}
		})
	}
}

func TestHandshakeFailures(t *testing.T) {
	des := wire.Proposal{Num: 1, Protocol: wire.ProtocolIKE, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: 3}, {Type: wire.TransformPRF, ID: wire.PRFHMACSHA256},
		{Type: wire.TransformINTEG, ID: wire.IntegSHA256}, {Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)}}}
	onlyX := ike.Proposal(ike.Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519})
	for _, tc := range []struct {
		name string
		cfg  ike.Config
		b    iketest.Behaviour
		want string
	}{
		{"no proposal chosen", ike.Config{Proposals: []wire.Proposal{des}}, iketest.Behaviour{}, "NO_PROPOSAL_CHOSEN"},
		{"group not offered", ike.Config{Proposals: []wire.Proposal{onlyX}}, iketest.Behaviour{Group: wire.DHECP256}, "not offered"},
		{"wrong psk", ike.Config{PSK: []byte("another key")}, iketest.Behaviour{}, "AUTHENTICATION_FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.cfg, tc.b)
			r.start()
			c, ok := find[proto.SAClosed](r.obs)
			if !ok || c.Cause != proto.CloseHandshake || !bytes.Contains([]byte(c.Reason), []byte(tc.want)) {
				t.Errorf("closed %v, want handshake failure with %q", c, tc.want)
			}
		})
	}
}

// RFC 6023: childless IKE_AUTH when the responder announced it, a CHILD_SA
// proposal otherwise (or when forced).
func TestChildMode(t *testing.T) {
	for _, tc := range []struct {
		mode      ike.ChildMode
		childless bool
		proposed  bool
	}{
		{ike.ChildAuto, true, false},
		{ike.ChildAuto, false, true},
		{ike.ChildAlways, true, true},
		{ike.ChildNever, false, false},
	} {
		r := newRig(t, ike.Config{Child: tc.mode}, iketest.Behaviour{Childless: tc.childless})
		r.start()
		sa := r.gw.SAs()[0]
		auth := sa.Requests[0]
		if (auth.Find(wire.PayloadSA) != nil) != tc.proposed || r.in.Child().Proposed != tc.proposed {
			t.Errorf("%v childless=%t: proposed=%t", tc.mode, tc.childless, r.in.Child().Proposed)
		}
		if tc.proposed && (r.in.Child().Accepted == nil || sa.Child == nil) {
			t.Errorf("%v: child not accepted: %+v", tc.mode, r.in.Child())
		}
		if !sa.Established || sa.PeerID.String() != "conform.test" {
			t.Errorf("gateway: %s", sa)
		}
	}
}

// B5: a retransmitted request is byte-identical (the SK payload is not
// re-encrypted), also when it moves to another pair (M13).
func TestRetransmissionIdentical(t *testing.T) {
	r := newRig(t, ike.Config{}, iketest.Behaviour{})
	r.start()
	r.drop = true
	r.apply(r.peer.UpdateAddresses(r.now, proto.Pair{Local: local2, Remote: netip.AddrPortFrom(gw.Addr(), 4500)}))
	first := r.sent[len(r.sent)-1]
	r.now = r.now.Add(time.Second)
	r.drop = false
	r.apply(r.peer.OnTimer(r.now), nil)
	if again := r.sent[len(r.sent)-1]; !bytes.Equal(first, again) {
		t.Error("retransmission differs from the first transmission")
	}
	if _, ok := find[proto.UpdateConfirmed](r.obs); !ok {
		t.Errorf("update not confirmed: %v", r.obs)
	}
	if sa := r.gw.SAs()[0]; sa.Pair.Remote != local2 || sa.Updates != 1 {
		t.Errorf("gateway: %s", sa)
	}
}

// The gateway decrypts what the initiator sealed and vice versa, for every
// exchange after IKE_AUTH: path test, update, address list, delete.
func TestInformationalExchanges(t *testing.T) {
	for _, s := range []ike.Suite{
		{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519},
		{Encr: wire.EncrAESCBC, KeyBits: 128, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519},
	} {
		t.Run(s.String(), func(t *testing.T) {
			r := newRig(t, ike.Config{Proposals: []wire.Proposal{ike.Proposal(s)}}, iketest.Behaviour{})
			r.start()
			gw4500 := netip.AddrPortFrom(gw.Addr(), 4500)
			r.apply(r.peer.TestPaths(r.now, []proto.Pair{{Local: local2, Remote: gw4500}}))
			if res, ok := find[proto.PathTestResult](r.obs); !ok || !res.Passed || !res.NATChecked || res.NATHere || res.NATPeer {
				t.Errorf("path test %v", res)
			}
			r.apply(r.peer.SetLocalAddrs(r.now, []netip.Addr{local.Addr(), local2.Addr()}), nil)
			if ack, ok := find[proto.AddressListAcknowledged](r.obs); !ok || ack.Error != 0 {
				t.Errorf("address list %v", ack)
			}
			r.apply(r.peer.Delete(r.now))
			if c, ok := find[proto.SAClosed](r.obs); !ok || c.Cause != proto.CloseDeleted {
				t.Errorf("delete: %v", r.obs)
			}
			sa := r.gw.SAs()[0]
			if !sa.Deleted || len(sa.PeerAddrs) != 2 {
				t.Errorf("gateway %s peers %v", sa, sa.PeerAddrs)
			}
		})
	}
}
