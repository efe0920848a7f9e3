package proto

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Fixes from the review of the engine (issue 15, item 4). Each test failed
// before its fix.

// M49: the NAT mapping reference comes from the first liveness check when no
// update reply set it, so a NAT that reboots before the first update is
// noticed (strongSwan does the same).
func TestFixM49ReferenceFromFirstDPD(t *testing.T) {
	ic := icfg()
	ic.DPDInterval = 2 * time.Second
	w := newWorld(t)
	i := w.addNode("I", ic, I2n)
	r := w.addNode("R", rcfg(), R1)
	w.addNAT(I2n, N1)
	w.establish(i, r, pr(I2n+":500", R1+":500"))
	if here, _ := i.peer.NAT(); !here {
		t.Fatal("initiator does not see its NAT")
	}
	w.run(5 * time.Second) // one DPD: learns the reference
	for _, nb := range w.nats {
		nb.out, nb.in, nb.next = map[netip.AddrPort]netip.AddrPort{}, map[netip.AddrPort]netip.AddrPort{}, 50000
	}
	w.run(12 * time.Second)
	if n := count[UpdateConfirmed](i.obs); n != 1 {
		t.Errorf("%d updates confirmed, want 1 after the NAT reboot", n)
	}
	if got := r.peer.IKEPair().Remote; got.Port() != 50000 {
		t.Errorf("responder still sends to %s", got)
	}
}

// M41/M42: COOKIE2 of every length from 8 to 64 octets is echoed unchanged,
// also in an UNSUPPORTED_CRITICAL_PAYLOAD reply and on an SA where the
// initiator did not negotiate MOBIKE.
func TestFixCookie2EchoedEverywhere(t *testing.T) {
	for _, ctx := range []string{"plain", "critical", "not negotiated"} {
		t.Run(ctx, func(t *testing.T) {
			ic := icfg()
			if ctx == "not negotiated" {
				ic.MOBIKE = false
			}
			w, _, r := est(t, ic, rcfg())
			for n := 8; n <= 64; n++ {
				c := bytes.Repeat([]byte{byte(n)}, n)
				pl := []wire.Payload{nn(wire.NotifyCookie2, c)}
				if ctx == "critical" {
					pl = append(pl, &wire.Raw{Kind: 200, Critical: true, Body: []byte{1}})
				}
				s := onlySend(t, r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, uint32(n-6), pl...)}))
				got := s.Msg.Notify(wire.NotifyCookie2)
				if got == nil || !bytes.Equal(got.Data, c) {
					t.Fatalf("len %d: response %s", n, FormatMessage(s.Msg))
				}
			}
		})
	}
}

// RFC 7296 §2.21.3: INVALID_SYNTAX in the reply to an update closes the SA
// (it is not an UNACCEPTABLE_ADDRESSES to revert from).
func TestFixInvalidSyntaxInUpdateReplyCloses(t *testing.T) {
	w, i, _ := est(t, icfg(), rcfg())
	outs, err := i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1)))
	if err != nil {
		t.Fatal(err)
	}
	req := onlySend(t, outs)
	resp := &wire.Message{Header: req.Msg.Header, Payloads: []wire.Payload{
		wire.NotifyStatus(wire.NotifyInvalidSyntax), req.Msg.Notify(wire.NotifyCookie2)}}
	resp.Flags = wire.FlagResponse
	i.peer.Handle(w.now, Packet{Src: req.Dst, Dst: req.Src, Msg: resp})
	if closed, why := i.peer.Closed(); !closed || i.peer.CloseCause() != CloseInvalidSyntax {
		t.Errorf("closed=%t (%s, %v), want closed by INVALID_SYNTAX", closed, why, i.peer.CloseCause())
	}
}

// M33, M38: a list whose every entry is refused (malformed data, loopback,
// multicast, unspecified) leaves the peer set alone; a refused entry next to
// a good one is dropped.
func TestFixRefusedAddressEntries(t *testing.T) {
	bad := func(typ wire.NotifyType, data ...byte) *wire.Notify { return nn(typ, data) }
	a4 := func(s string) *wire.Notify { n, _ := wire.AdditionalAddress(ad(s)); return n }
	for _, tc := range []struct {
		name string
		list []wire.Payload
		want []netip.Addr
	}{
		{"malformed only", []wire.Payload{bad(wire.NotifyAdditionalIP4Address, 1, 2, 3)}, nil},
		{"loopback", []wire.Payload{a4("127.0.0.1")}, nil},
		{"multicast", []wire.Payload{a4("224.0.0.1"), a4("ff02::1")}, nil},
		{"unspecified", []wire.Payload{a4("0.0.0.0"), a4("::")}, nil},
		{"one good", []wire.Payload{a4("127.0.0.1"), a4(I3)}, []netip.Addr{ad(I1), ad(I3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _, r := est(t, icfg(), rcfg())
			before := r.peer.PeerAddrs()
			if len(before) != 2 {
				t.Fatalf("set after IKE_AUTH %v", before)
			}
			r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 2, tc.list...)})
			want := tc.want
			if want == nil {
				want = before
			}
			if got := r.peer.PeerAddrs(); !slices.Equal(got, want) {
				t.Errorf("peer set %v, want %v", got, want)
			}
		})
	}
}

// §2.2: SKF (RFC 7383) is a payload type this engine knows, so its critical
// bit does not reject the message.
func TestFixSKFIsKnown(t *testing.T) {
	w, _, r := est(t, icfg(), rcfg())
	m := infoReq(r.peer, 2, &wire.Raw{Kind: wire.PayloadSKF, Critical: true, Body: []byte{0, 1, 0, 1}})
	s := onlySend(t, r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: m}))
	if s.Msg.Notify(wire.NotifyUnsupportedCriticalPayload) != nil {
		t.Errorf("SKF refused: %s", FormatMessage(s.Msg))
	}
}

// RFC 7296 §3.14: an Encrypted payload inside the Encrypted payload is
// refused with INVALID_SYNTAX and nothing in the request is applied.
func TestFixNestedSKRefused(t *testing.T) {
	w, _, r := est(t, icfg(), rcfg())
	m := infoReq(r.peer, 2, wire.NotifyStatus(wire.NotifyUpdateSAAddresses),
		&wire.Encrypted{FirstInner: wire.PayloadNotify, Body: make([]byte, 32)})
	s := onlySend(t, r.peer.Handle(w.now, Packet{Src: ap(p4500(I2)), Dst: ap(p4500(R1)), Msg: m}))
	if s.Msg.Notify(wire.NotifyInvalidSyntax) == nil {
		t.Errorf("response %s, want INVALID_SYNTAX", FormatMessage(s.Msg))
	}
	wantIKE(t, r, resp11())
}

// M17 before M18: a stale UPDATE_SA_ADDRESSES gets an ordinary response,
// even when its NO_NATS_ALLOWED does not match.
func TestFixStaleUpdateBeforeNoNATsCheck(t *testing.T) {
	ic, rc := icfg(), rcfg()
	ic.Window, rc.Window = 2, 2
	w, _, r := est(t, ic, rc)
	upd := func(mid uint32, src string, extra ...wire.Payload) Send {
		m := infoReq(r.peer, mid, append([]wire.Payload{wire.NotifyStatus(wire.NotifyUpdateSAAddresses)}, extra...)...)
		return sends(r.peer.Handle(w.now, Packet{Src: ap(p4500(src)), Dst: ap(p4500(R1)), Msg: m}))[0]
	}
	upd(3, I2)
	wrong, _ := wire.NoNATsAllowed(ap(p4500(V)), ap(p4500(R1)))
	s := upd(2, I3, wrong)
	if s.Msg.Notify(wire.NotifyUnexpectedNATDetected) != nil {
		t.Errorf("stale update answered %s, want an ordinary response", FormatMessage(s.Msg))
	}
	if got := r.peer.IKEPair().Remote; got != ap(p4500(I2)) {
		t.Errorf("stale update applied: %s", got)
	}
}
