package proto

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// est returns an established pair without a trace golden.
func est(t *testing.T, ic, rc Config) (*world, *node, *node) {
	t.Helper()
	return setup(t, ic, rc, []string{I1, I2}, []string{R1, R2})
}

// infoReq builds an INFORMATIONAL request of the initiator with Message ID mid.
func infoReq(p *Peer, mid uint32, pl ...wire.Payload) *wire.Message {
	spiI, spiR := p.SPIs()
	return &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: spiR, Exchange: wire.ExchangeInformational, Flags: wire.FlagInitiator, MessageID: mid}, Payloads: pl}
}

func sends(outs []Output) []Send {
	var s []Send
	for _, o := range outs {
		if x, ok := o.(Send); ok {
			s = append(s, x)
		}
	}
	return s
}

func onlySend(t *testing.T, outs []Output) Send {
	t.Helper()
	s := sends(outs)
	if len(s) != 1 {
		t.Fatalf("want 1 send, got %v", outs)
	}
	return s[0]
}

func nn(t wire.NotifyType, data []byte) *wire.Notify { return &wire.Notify{Type: t, Data: data} }

func TestRuleM2Negotiation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		iMOB, rMOB bool
		want       bool
	}{
		{"both", true, true, true},
		{"initiator only", true, false, false},
		{"responder only", false, true, false},
		{"neither", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic, rc := icfg(), rcfg()
			ic.MOBIKE, rc.MOBIKE = tc.iMOB, tc.rMOB
			_, i, r := est(t, ic, rc)
			if i.peer.MOBIKE() != tc.want || r.peer.MOBIKE() != tc.want {
				t.Errorf("mobike I=%t R=%t, want %t", i.peer.MOBIKE(), r.peer.MOBIKE(), tc.want)
			}
		})
	}
}

// M18, M54, M55: NO_NATS_ALLOWED is compared with the headers; any
// difference, bad length or family mismatch answers UNEXPECTED_NAT_DETECTED.
func TestRuleM54NoNATsAllowedCompare(t *testing.T) {
	src, dst := ap(p4500(I2)), ap(p4500(R1))
	good, _ := wire.NoNATsAllowed(src, dst)
	otherPort, _ := wire.NoNATsAllowed(ap(I2+":4501"), dst)
	otherAddr, _ := wire.NoNATsAllowed(ap(p4500(I3)), dst)
	v6, _ := wire.NoNATsAllowed(ap("[2001:db8::2]:4500"), ap("[2001:db8::1]:4500"))
	for _, tc := range []struct {
		name    string
		data    []byte
		applied bool
	}{
		{"match", good.Data, true},
		{"other port", otherPort.Data, false},
		{"other address", otherAddr.Data, false},
		{"11 octets", good.Data[:11], false},
		{"37 octets", append(bytes.Clone(v6.Data), 0), false},
		{"family mismatch", v6.Data, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _, r := est(t, icfg(), rcfg())
			m := infoReq(r.peer, 2, wire.NotifyStatus(wire.NotifyUpdateSAAddresses), nn(wire.NotifyNoNATsAllowed, tc.data))
			outs := r.peer.Handle(w.now, Packet{Src: src, Dst: dst, Msg: m})
			s := sends(outs)[0] // the response; an RR check may follow
			gotNAT := s.Msg.Notify(wire.NotifyUnexpectedNATDetected) != nil
			if gotNAT == tc.applied {
				t.Errorf("UNEXPECTED_NAT_DETECTED=%t, applied want %t: %v", gotNAT, tc.applied, outs)
			}
			if s.Dst != src {
				t.Errorf("answered to %s, want the real source %s", s.Dst, src)
			}
			if applied := r.peer.IKEPair().Remote == src; applied != tc.applied {
				t.Errorf("ike remote %s, applied want %t", r.peer.IKEPair().Remote, tc.applied)
			}
		})
	}
}

// M21, M48: the response carries the responder's own NAT-D for the response
// packet, not a copy of the request's, and a plain INFORMATIONAL changes
// nothing (scenario 13).
func TestRuleM48NATDFresh(t *testing.T) {
	w, i, r := est(t, icfg(), rcfg())
	spiI, spiR := i.peer.SPIs()
	src, dst := ap(p4500(I2)), ap(p4500(R1))
	reqSrc := wire.NATDetectionSource(spiI, spiR, src)
	reqDst := wire.NATDetectionDestination(spiI, spiR, dst)
	outs := r.peer.Handle(w.now, Packet{Src: src, Dst: dst, Msg: infoReq(r.peer, 2, reqSrc, reqDst)})
	s := onlySend(t, outs)
	gs, gd := s.Msg.Notify(wire.NotifyNATDetectionSourceIP), s.Msg.Notify(wire.NotifyNATDetectionDestinationIP)
	if gs == nil || gd == nil {
		t.Fatalf("no NAT-D in response %s", FormatMessage(s.Msg))
	}
	wantS, wantD := wire.NATDetectionHash(spiI, spiR, dst), wire.NATDetectionHash(spiI, spiR, src)
	if !bytes.Equal(gs.Data, wantS[:]) || !bytes.Equal(gd.Data, wantD[:]) {
		t.Error("response NAT-D is not computed for the response packet")
	}
	if bytes.Equal(gs.Data, reqSrc.Data) {
		t.Error("response NAT-D copied from the request")
	}
	wantIKE(t, r, resp11()) // M51: no implicit update from the new source
	wantTraffic(t, r, resp11(), false)
}

// M51 and scenario 12: an authenticated request from a new source without
// UPDATE_SA_ADDRESSES is answered there and changes nothing.
func TestRuleM51NoImplicitUpdate(t *testing.T) {
	w, _, r := est(t, icfg(), rcfg())
	src := ap("192.0.2.99:3333")
	s := onlySend(t, r.peer.Handle(w.now, Packet{Src: src, Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 2)}))
	if s.Dst != src || s.Src != ap(p4500(R1)) {
		t.Errorf("answer %s->%s", s.Src, s.Dst)
	}
	wantIKE(t, r, resp11())
}

// M42: COOKIE2 of 8 and 64 octets is echoed exactly; 7 and 65 are not
// echoed (documented choice).
func TestRuleM42Cookie2Lengths(t *testing.T) {
	for _, n := range []int{7, 8, 16, 64, 65} {
		w, _, r := est(t, icfg(), rcfg())
		c := bytes.Repeat([]byte{byte(n)}, n)
		s := onlySend(t, r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 2, nn(wire.NotifyCookie2, c))}))
		got := s.Msg.Notify(wire.NotifyCookie2)
		echo := n >= 8 && n <= 64
		if (got != nil) != echo || (echo && !bytes.Equal(got.Data, c)) {
			t.Errorf("len %d: echoed %v, want echo=%t", n, got, echo)
		}
	}
}

// M32, M33, M38: the set is the source plus the list, deduplicated and
// bounded; ADDITIONAL_* wins over NO_ADDITIONAL_ADDRESSES; malformed
// entries are skipped.
func TestRuleM33AddressSet(t *testing.T) {
	a4 := func(s string) *wire.Notify { n, _ := wire.AdditionalAddress(ad(s)); return n }
	many := []wire.Payload{}
	for k := 1; k <= 12; k++ {
		many = append(many, a4(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + k)}).String()))
	}
	for _, tc := range []struct {
		name string
		pl   []wire.Payload
		want []string
	}{
		{"no additional", []wire.Payload{wire.NotifyStatus(wire.NotifyNoAdditionalAddresses)}, []string{I2}},
		{"list", []wire.Payload{a4(I3), a4("2001:db8::5")}, []string{I2, I3, "2001:db8::5"}},
		{"header repeated and duplicates", []wire.Payload{a4(I2), a4(I3), a4(I3)}, []string{I2, I3}},
		{"both kinds: additional wins", []wire.Payload{wire.NotifyStatus(wire.NotifyNoAdditionalAddresses), a4(I3)}, []string{I2, I3}},
		{"bad length skipped", []wire.Payload{nn(wire.NotifyAdditionalIP4Address, []byte{1, 2, 3}), a4(I3)}, []string{I2, I3}},
		{"bounded", many, []string{I2, "192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104", "192.0.2.105", "192.0.2.106", "192.0.2.107", "192.0.2.108"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _, r := est(t, icfg(), rcfg())
			outs := r.peer.Handle(w.now, Packet{Src: ap(p4500(I2)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 2, tc.pl...)})
			var want []netip.Addr
			for _, s := range tc.want {
				want = append(want, ad(s))
			}
			if got := r.peer.PeerAddrs(); !slices.Equal(got, want) {
				t.Errorf("set %v, want %v", got, want)
			}
			if _, ok := has[PeerAddressesChanged](outs); !ok {
				t.Error("no PeerAddressesChanged")
			}
			wantIKE(t, r, resp11()) // a list alone moves nothing
		})
	}
}

// B4, B5, M59: window and retransmission handling on the receiving side.
func TestRuleB4ReceiveWindow(t *testing.T) {
	w, _, r := est(t, icfg(), rcfg())
	pk := func(mid uint32, src string) Packet {
		return Packet{Src: ap(src), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, mid)}
	}
	if outs := r.peer.Handle(w.now, pk(3, p4500(I1))); len(sends(outs)) != 0 {
		t.Errorf("request outside the window answered: %v", outs)
	}
	first := onlySend(t, r.peer.Handle(w.now, pk(2, p4500(I1))))
	again := onlySend(t, r.peer.Handle(w.now, pk(2, p4500(I2))))
	if again.Dst != ap(p4500(I2)) || again.Msg != first.Msg {
		t.Errorf("retransmission not answered with the stored response at its source")
	}
	onlySend(t, r.peer.Handle(w.now, pk(3, p4500(I1))))
	onlySend(t, r.peer.Handle(w.now, pk(4, p4500(I1))))
	if outs := r.peer.Handle(w.now, pk(2, p4500(I1))); len(sends(outs)) != 0 {
		t.Errorf("request whose response was discarded answered again: %v", outs)
	}
	if outs := r.peer.Handle(w.now, pk(0, p4500(I1))); len(sends(outs)) != 0 {
		t.Errorf("old IKE_SA_INIT-era id answered: %v", outs)
	}
}

// B5, M13, M58: retransmissions are the identical message, moved to the
// current pair.
func TestRuleB5IdenticalRetransmission(t *testing.T) {
	w, i, _ := est(t, icfg(), rcfg())
	w.blockBoth(I1, R1)
	ic := i.peer
	ic.cfg.DPDInterval = time.Second
	w.run(2 * time.Second)
	var dpd *Send
	for _, o := range ic.OnTimer(w.now.Add(10 * time.Second)) {
		if s, ok := o.(Send); ok {
			dpd = &s
		}
	}
	if dpd == nil {
		t.Fatal("no retransmission")
	}
	outs, err := ic.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(sends(outs)) != 0 {
		t.Fatalf("update sent while the window is full: %v", outs)
	}
	re := onlySend(t, ic.OnTimer(w.now.Add(time.Hour)))
	b1, _ := dpd.Msg.Marshal()
	b2, _ := re.Msg.Marshal()
	if !bytes.Equal(b1, b2) || re.Src != ap(p4500(I2)) {
		t.Errorf("retransmission differs or not moved: %s %s", re.Src, FormatMessage(re.Msg))
	}
}

// §2.2 and scenario 38: an unknown critical payload rejects the request;
// a non-critical one is skipped.
func TestRuleCriticalBit(t *testing.T) {
	for _, crit := range []bool{true, false} {
		w, _, r := est(t, icfg(), rcfg())
		m := infoReq(r.peer, 2, wire.NotifyStatus(wire.NotifyUpdateSAAddresses), &wire.Raw{Kind: 200, Critical: crit, Body: []byte{1}})
		s := sends(r.peer.Handle(w.now, Packet{Src: ap(p4500(I2)), Dst: ap(p4500(R1)), Msg: m}))[0]
		n := s.Msg.Notify(wire.NotifyUnsupportedCriticalPayload)
		moved := r.peer.IKEPair().Remote == ap(p4500(I2))
		if crit && (n == nil || !bytes.Equal(n.Data, []byte{200}) || moved) {
			t.Errorf("critical: notify %v, moved %t", n, moved)
		}
		if !crit && (n != nil || !moved) {
			t.Errorf("non-critical: notify %v, moved %t", n, moved)
		}
	}
}

// Scenario 39: UPDATE_SA_ADDRESSES from the responder role is answered but
// does not move the initiator.
func TestRuleUpdateFromResponderRole(t *testing.T) {
	w, i, r := est(t, icfg(), rcfg())
	spiI, spiR := r.peer.SPIs()
	m := &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: spiR, Exchange: wire.ExchangeInformational, MessageID: 0},
		Payloads: []wire.Payload{wire.NotifyStatus(wire.NotifyUpdateSAAddresses)}}
	outs := i.peer.Handle(w.now, Packet{Src: ap(p4500(R2)), Dst: ap(p4500(I1)), Msg: m})
	onlySend(t, outs)
	wantIKE(t, i, base11())
	if indexOf(outs, "responder role") < 0 {
		t.Errorf("not flagged: %v", outs)
	}
}

// M63: only the first response per Message ID is processed.
func TestRuleM63DuplicateResponse(t *testing.T) {
	w, i, r := est(t, icfg(), rcfg())
	outs, _ := i.peer.TestPaths(w.now, []Pair{base11()})
	req := onlySend(t, outs)
	resp := onlySend(t, r.peer.Handle(w.now, Packet{Src: req.Src, Dst: req.Dst, Msg: req.Msg}))
	p := Packet{Src: resp.Src, Dst: resp.Dst, Msg: resp.Msg}
	if res, ok := has[PathTestResult](i.peer.Handle(w.now, p)); !ok || !res.Passed {
		t.Fatalf("first response: %v", res)
	}
	if outs := i.peer.Handle(w.now, p); indexOf(outs, "duplicate") < 0 {
		t.Errorf("duplicate not dropped: %v", outs)
	}
}

// M49: a DPD answer whose NAT_DETECTION_DESTINATION_IP differs from the one
// of the last update reply triggers UPDATE_SA_ADDRESSES.
func TestRuleM49DPDNATMappingChange(t *testing.T) {
	ic := icfg()
	ic.DPDInterval = 2 * time.Second
	w, i, r := setup(t, ic, rcfg(), []string{I1, I2n}, []string{R1})
	w.addNAT(I2n, N1)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2n), p4500(R1))))
	w.run(2 * time.Second)
	for _, nb := range w.nats { // the NAT reboots: new external port
		nb.out, nb.in, nb.next = map[netip.AddrPort]netip.AddrPort{}, map[netip.AddrPort]netip.AddrPort{}, 50000
	}
	w.run(8 * time.Second)
	if n := count[UpdateConfirmed](i.obs); n != 2 {
		t.Errorf("%d updates confirmed, want 2 (the second from M49)", n)
	}
	wantTraffic(t, r, pr(p4500(R1), N1+":50000"), true)
}

// B2: a Delete of the IKE SA is answered and closes the SA.
func TestRuleB2Delete(t *testing.T) {
	w, _, r := est(t, icfg(), rcfg())
	outs := r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 2, &wire.Delete{Protocol: wire.ProtocolIKE})})
	onlySend(t, outs)
	if closed, _ := r.peer.Closed(); !closed {
		t.Error("not closed")
	}
	if outs := r.peer.Handle(w.now, Packet{Src: ap(p4500(I1)), Dst: ap(p4500(R1)), Msg: infoReq(r.peer, 3)}); outs != nil {
		t.Errorf("closed peer answered: %v", outs)
	}
}

// M53, M54, M56: NO_NATS_ALLOWED in the first IKE_AUTH request; a NAT on the
// way makes R answer UNEXPECTED_NAT_DETECTED and both sides give up the SA.
func TestRuleM56UnexpectedNATInIKEAuth(t *testing.T) {
	ic, rc := icfg(), rcfg()
	ic.NATT, rc.NATT = false, false
	w := newWorld(t)
	i := w.addNode("I", ic, I2n)
	r := w.addNode("R", rc, R1)
	w.addNAT(I2n, N1)
	w.call(i)(i.peer.Start(w.now, pr(I2n+":500", R1+":500")))
	w.run(time.Second)
	for _, n := range []*node{i, r} {
		if closed, why := n.peer.Closed(); !closed || !strings.Contains(why, "nat") && !strings.Contains(why, "NAT") {
			t.Errorf("%s closed=%t (%s)", n.name, closed, why)
		}
	}
	if _, ok := has[UnexpectedNAT](i.obs); !ok {
		t.Error("I saw no UnexpectedNAT")
	}
}

// RFC 4621 §5.5.2, M69: ESP on the current pair is liveness, elsewhere not.
func TestRuleLivenessOnlyOnCurrentPair(t *testing.T) {
	w, i, _ := est(t, icfg(), rcfg())
	later := w.now.Add(time.Minute)
	if outs := i.peer.HandleESP(later, ap(p4500(R1)), ap(p4500(I2))); count[StrayTraffic](outs) != 1 || i.peer.LastAlive().Equal(later) {
		t.Errorf("wrong pair counted: %v", outs)
	}
	if outs := i.peer.HandleESP(later, ap(p4500(R1)), ap(p4500(I1))); len(outs) != 0 || !i.peer.LastAlive().Equal(later) {
		t.Errorf("right pair not counted: %v", outs)
	}
}

func TestRuleAPIErrors(t *testing.T) {
	if _, err := New(Config{Role: Initiator}); err == nil {
		t.Error("New without Rand")
	}
	if _, err := New(Config{Rand: seeded(1)}); !errors.Is(err, ErrRole) {
		t.Errorf("New without role: %v", err)
	}
	idle, _ := New(Config{Role: Initiator, Rand: seeded(1)})
	if _, err := idle.UpdateAddresses(t0, base11()); !errors.Is(err, ErrNotEstablished) {
		t.Errorf("update before established: %v", err)
	}
	if _, err := idle.Start(t0, Pair{}); !errors.Is(err, ErrBadPair) {
		t.Errorf("start with zero pair: %v", err)
	}
	w, i, r := est(t, icfg(), rcfg())
	if _, err := r.peer.UpdateAddresses(w.now, resp11()); !errors.Is(err, ErrRole) {
		t.Errorf("responder update: %v", err)
	}
	if _, err := i.peer.Start(w.now, base11()); !errors.Is(err, ErrRole) {
		t.Errorf("second start: %v", err)
	}
	if _, err := i.peer.UpdateAddresses(w.now, pr(p4500(I1), "[2001:db8::1]:4500")); !errors.Is(err, ErrBadPair) {
		t.Errorf("mixed family: %v", err)
	}
	if _, err := i.peer.TestPaths(w.now, nil); !errors.Is(err, ErrBadPair) {
		t.Errorf("no pairs: %v", err)
	}
	if _, err := i.peer.TestPaths(w.now, []Pair{{}}); !errors.Is(err, ErrBadPair) {
		t.Errorf("zero pair: %v", err)
	}
	if _, err := i.peer.TestPaths(w.now, []Pair{base11()}); err != nil {
		t.Fatal(err)
	}
	if _, err := i.peer.TestPaths(w.now, []Pair{base11()}); !errors.Is(err, ErrBusy) {
		t.Errorf("second test: %v", err)
	}
	if i.peer.Role() != Initiator || r.peer.Role().String() != "responder" || Role(9).String() != "role(9)" {
		t.Error("role strings")
	}
	if !i.peer.Verified(ap(p4500(R1))) || i.peer.Verified(ap(p4500(R2))) {
		t.Error("verified set")
	}
	if outs := i.peer.Handle(w.now, Packet{Src: ap(p4500(R1)), Dst: ap(p4500(I1)), Msg: &wire.Message{Header: wire.Header{Exchange: wire.ExchangeInformational}}}); indexOf(outs, "unknown ike sa") < 0 {
		t.Errorf("foreign SPI: %v", outs)
	}
}

// A failing random source closes the SA instead of sending a predictable
// COOKIE2.
func TestRuleRandomFailure(t *testing.T) {
	w, i, _ := est(t, icfg(), rcfg())
	i.peer.cfg.Rand = bytes.NewReader(nil)
	outs, err := i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := has[SAClosed](outs); !ok || len(sends(outs)) != 0 {
		t.Errorf("outs %v", outs)
	}
}

func TestOutputStrings(t *testing.T) {
	p := base11()
	for _, o := range []Output{
		Send{Src: p.Local, Dst: p.Remote}, Established{Pair: p}, AddressesUpdated{Pair: p}, TrafficMoved{Pair: p},
		UpdateConfirmed{Pair: p}, UpdateRejected{Pair: p}, PeerAddressesChanged{Addrs: []netip.Addr{ad(I1)}},
		ReturnRoutabilityStarted{}, ReturnRoutabilityPassed{}, ReturnRoutabilityFailed{}, NATChanged{},
		UnexpectedNAT{}, PathTestStarted{Pairs: []Pair{p}}, PathTestResult{}, StrayTraffic{IKE: true},
		Ignored{}, SAClosed{},
	} {
		o.isOutput()
		if o.String() == "" {
			t.Errorf("%T has an empty String", o)
		}
	}
	m := infoReq(&Peer{}, 1, &wire.Delete{Protocol: wire.ProtocolIKE}, &wire.Raw{Kind: 200}, nn(wire.NotifyCookie2, make([]byte, 8)))
	if got := FormatMessage(m); got != "INFORMATIONAL req #1 [D(IKE) payload(200) COOKIE2(8B)]" {
		t.Errorf("FormatMessage = %q", got)
	}
}

// M11, M29, M44: an initiator that requires return routability moves the
// IKE SA to an unchecked responder address at once, but the IPsec SAs only
// when the COOKIE2-carrying update is answered from there.
func TestRuleM11InitiatorWaitsForRR(t *testing.T) {
	ic := icfg()
	ic.RequireRR = true
	w, i, r := est(t, ic, rcfg())
	target := pr(p4500(I1), p4500(R2))
	outs, err := i.peer.UpdateAddresses(w.now, target)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := has[TrafficMoved](outs); ok {
		t.Fatal("traffic moved before the check")
	}
	wantTraffic(t, i, base11(), false)
	w.apply(i, outs)
	w.run(3 * time.Second)
	if !i.peer.Verified(target.Remote) {
		t.Error("R2 not verified")
	}
	wantTraffic(t, i, target, false)
	wantTraffic(t, r, pr(p4500(R2), p4500(I1)), false)
}

// M70: the responder caps how often the initiator may move it; beyond the
// budget the update is refused with UNACCEPTABLE_ADDRESSES.
func TestRuleM70MoveBudget(t *testing.T) {
	rc := rcfg()
	rc.RequireRR = false
	rc.MaxMovesPerMinute = 2
	w, _, r := est(t, icfg(), rc)
	send := func(mid uint32, src string) *wire.Message {
		m := infoReq(r.peer, mid, wire.NotifyStatus(wire.NotifyUpdateSAAddresses))
		return sends(r.peer.Handle(w.now, Packet{Src: ap(src), Dst: ap(p4500(R1)), Msg: m}))[0].Msg
	}
	for k, tc := range []struct {
		src    string
		refuse bool
	}{{p4500(I2), false}, {p4500(I2), false}, {p4500(I3), false}, {p4500(I1), true}} {
		refused := send(uint32(2+k), tc.src).Notify(wire.NotifyUnacceptableAddresses) != nil
		if refused != tc.refuse {
			t.Errorf("update %d from %s: refused=%t", k, tc.src, refused)
		}
	}
	wantIKE(t, r, pr(p4500(R1), p4500(I3)))
	w.now = w.now.Add(time.Minute)
	if send(6, p4500(I1)).Notify(wire.NotifyUnacceptableAddresses) != nil {
		t.Error("budget not refilled after a minute")
	}
}

// M52: keepalives only from the peer behind the NAT, on the traffic pair.
func TestRuleM52Keepalive(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2n}, []string{R1})
	if _, ok := i.peer.Keepalive(); ok {
		t.Error("keepalive without NAT")
	}
	w.addNAT(I2n, N1)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2n), p4500(R1))))
	w.run(3 * time.Second)
	if p, ok := i.peer.Keepalive(); !ok || p != pr(p4500(I2n), p4500(R1)) {
		t.Errorf("I keepalive %v %t", p, ok)
	}
	if _, ok := r.peer.Keepalive(); ok {
		t.Error("R (not behind the NAT) sends keepalives")
	}
}
