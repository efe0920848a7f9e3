package proto

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Addresses: I1..I3 initiator, R1/R2 responder, V a victim, N1 a NAT.
const (
	I1  = "192.0.2.10"
	I2  = "192.0.2.20"
	I3  = "192.0.2.30"
	R1  = "198.51.100.1"
	R2  = "198.51.100.2"
	V   = "203.0.113.66"
	N1  = "203.0.113.1"
	I2n = "10.0.0.2" // I2 behind N1
)

func p4500(a string) string { return a + ":4500" }

func icfg() Config {
	return Config{Role: Initiator, MOBIKE: true, NATT: true, RetransmitTimeout: time.Second, RetransmitTries: 3}
}

func rcfg() Config {
	return Config{Role: Responder, MOBIKE: true, NATT: true, RequireRR: true, RetransmitTimeout: time.Second, RetransmitTries: 3}
}

// setup creates I with addrs iAddrs and R with rAddrs and establishes the SA
// on I1<->R1 (port 500, floating to 4500).
func setup(t *testing.T, ic, rc Config, iAddrs, rAddrs []string) (*world, *node, *node) {
	w := newWorld(t)
	i := w.addNode("I", ic, iAddrs...)
	r := w.addNode("R", rc, rAddrs...)
	w.establish(i, r, pr(iAddrs[0]+":500", rAddrs[0]+":500"))
	return w, i, r
}

var (
	base11 = func() Pair { return pr(p4500(I1), p4500(R1)) }
	resp11 = func() Pair { return pr(p4500(R1), p4500(I1)) }
)

// Scenario 1 and 5 (M2, M5, M6): MOBIKE_SUPPORTED both ways, port 4500,
// IKE and IPsec SAs on the IKE_AUTH pair, address lists stored (M7).
func TestScenarioNegotiationSucceeds(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1, R2})
	if !i.peer.MOBIKE() || !r.peer.MOBIKE() {
		t.Fatal("MOBIKE not enabled on both sides")
	}
	wantIKE(t, i, base11())
	wantIKE(t, r, resp11())
	wantTraffic(t, i, base11(), false)
	wantTraffic(t, r, resp11(), false)
	if got := i.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(R1), ad(R2)}) {
		t.Errorf("I peer set %v", got)
	}
	if got := r.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(I1), ad(I2)}) {
		t.Errorf("R peer set %v", got)
	}
	w.golden()
}

// Scenario 2 (M2, §1.1): R without MOBIKE. I refuses to send an update, and
// R answers MOBIKE notifies without acting on them.
func TestScenarioPeerWithoutMOBIKE(t *testing.T) {
	rc := rcfg()
	rc.MOBIKE = false
	w, i, r := setup(t, icfg(), rc, []string{I1, I2}, []string{R1})
	if i.peer.MOBIKE() || r.peer.MOBIKE() {
		t.Fatal("MOBIKE enabled without R's MOBIKE_SUPPORTED")
	}
	if _, err := i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))); !errors.Is(err, ErrNoMOBIKE) {
		t.Fatalf("UpdateAddresses err = %v, want ErrNoMOBIKE", err)
	}
	spiI, spiR := i.peer.SPIs()
	c2, _ := wire.Cookie2([]byte("12345678"))
	w.inject(ap(p4500(I2)), ap(p4500(R1)), &wire.Message{
		Header:   wire.Header{SPIi: spiI, SPIr: spiR, Exchange: wire.ExchangeInformational, Flags: wire.FlagInitiator, MessageID: 2},
		Payloads: []wire.Payload{wire.NotifyStatus(wire.NotifyUpdateSAAddresses), c2},
	})
	w.run(5 * time.Second)
	wantTraffic(t, r, resp11(), false)
	wantIKE(t, r, resp11())
	if _, ok := has[AddressesUpdated](r.obs); ok {
		t.Error("R without MOBIKE updated addresses")
	}
	w.golden()
}

// Scenario 3 (M2): MOBIKE_SUPPORTED with data is accepted, data ignored.
func TestScenarioMOBIKESupportedWithData(t *testing.T) {
	w := newWorld(t)
	i := w.addNode("I", icfg(), I1)
	r := w.addNode("R", rcfg(), R1)
	w.rewrite = func(f *flight, m *wire.Message) bool {
		if n := m.Notify(wire.NotifyMOBIKESupported); n != nil && m.Exchange == wire.ExchangeIKEAuth && !m.IsResponse() {
			n.Data = []byte{1, 2, 3, 4}
			w.logf("net: MOBIKE_SUPPORTED given 4 data octets")
		}
		return true
	}
	w.establish(i, r, pr(I1+":500", R1+":500"))
	if !i.peer.MOBIKE() || !r.peer.MOBIKE() {
		t.Fatal("MOBIKE not enabled")
	}
	w.golden()
}

// Scenario 6 (M10–M14, M17–M24, M40, M57): make-before-break. I tests I2,
// then updates with NAT-D and COOKIE2; R moves the IKE SA at once but the
// traffic only after its own COOKIE2 check of I2.
func TestScenarioMakeBeforeBreak(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.call(i)(i.peer.TestPaths(w.now, []Pair{pr(p4500(I2), p4500(R1))}))
	w.run(3 * time.Second)
	if res, ok := has[PathTestResult](i.obs); !ok || !res.Passed {
		t.Fatalf("path test: %v", res)
	}
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	// I2 is known-good at R1 (same responder address): I moves at once (M11).
	wantTraffic(t, i, pr(p4500(I2), p4500(R1)), false)
	w.run(6 * time.Second)
	upd := indexOf(r.obs, "ike-addresses #3")
	rr := indexOf(r.obs, "rr-passed")
	mv := indexOf(r.obs, "traffic-moved")
	if upd < 0 || rr < 0 || mv < 0 || !(upd < rr && rr < mv) {
		t.Errorf("R order: ike update %d, rr passed %d, traffic moved %d", upd, rr, mv)
	}
	wantIKE(t, r, pr(p4500(R1), p4500(I2)))
	wantTraffic(t, r, pr(p4500(R1), p4500(I2)), false)
	if _, ok := has[UpdateConfirmed](i.obs); !ok {
		t.Error("I saw no UpdateConfirmed")
	}
	w.golden()
}

func cookieRewriter(w *world, edit func(n *wire.Message)) func(*flight, *wire.Message) bool {
	return func(f *flight, m *wire.Message) bool {
		if m.IsResponse() && m.Exchange == wire.ExchangeInformational && m.Notify(wire.NotifyCookie2) != nil {
			edit(m)
			w.logf("net: on-path box edits COOKIE2 of #%d", m.MessageID)
		}
		return true
	}
}

// Scenario 24 (M43): a response with a different COOKIE2 closes the SA.
func TestScenarioForgedCookie2(t *testing.T) {
	w, i, _ := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.rewrite = cookieRewriter(w, func(m *wire.Message) { m.Notify(wire.NotifyCookie2).Data[0] ^= 0xff })
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.run(3 * time.Second)
	if closed, why := i.peer.Closed(); !closed {
		t.Fatalf("I not closed (%s)", why)
	}
	w.golden()
}

// Scenario 25 (M43, strongSwan reading): a response without COOKIE2 closes
// the SA.
func TestScenarioMissingCookie2(t *testing.T) {
	w, i, _ := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.rewrite = cookieRewriter(w, func(m *wire.Message) {
		m.Payloads = slices.DeleteFunc(m.Payloads, func(p wire.Payload) bool {
			n, ok := p.(*wire.Notify)
			return ok && n.Type == wire.NotifyCookie2
		})
	})
	w.call(i)(i.peer.TestPaths(w.now, []Pair{pr(p4500(I2), p4500(R1))}))
	w.run(3 * time.Second)
	if closed, _ := i.peer.Closed(); !closed {
		t.Fatal("I not closed")
	}
	w.golden()
}

// Scenario 27 (M22, M40, M46, RFC 4621 §5.5.2): a malicious authenticated
// initiator sends UPDATE_SA_ADDRESSES from victim V while R streams ESP.
// R moves only the IKE SA, checks V, never sends ESP to V, and tears the SA
// down when the check fails.
func TestScenarioThirdPartyBombing(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1}, []string{R1})
	spiI, spiR := i.peer.SPIs()
	c2, _ := wire.Cookie2([]byte("attacker"))
	w.inject(ap(p4500(V)), ap(p4500(R1)), &wire.Message{
		Header:   wire.Header{SPIi: spiI, SPIr: spiR, Exchange: wire.ExchangeInformational, Flags: wire.FlagInitiator, MessageID: 2},
		Payloads: []wire.Payload{wire.NotifyStatus(wire.NotifyUpdateSAAddresses), c2},
	})
	for s := 1; s <= 30; s++ {
		w.run(time.Duration(s) * time.Second)
		w.esp(r)
	}
	if len(w.lost[ad(V)]) == 0 {
		t.Fatal("nothing reached V: scenario did not run")
	}
	for _, k := range w.lost[ad(V)] {
		if k == "esp" {
			t.Fatal("R sent ESP to the victim")
		}
	}
	// The IKE response plus the check's transmissions, nothing more.
	if n := len(w.lost[ad(V)]); n > 1+1+r.peer.cfg.RetransmitTries {
		t.Errorf("%d packets to V", n)
	}
	if _, ok := has[ReturnRoutabilityFailed](r.obs); !ok {
		t.Error("no ReturnRoutabilityFailed")
	}
	if closed, _ := r.peer.Closed(); !closed {
		t.Error("R did not tear the SA down")
	}
	wantTraffic(t, r, resp11(), false)
	w.golden()
}

func holdFirst(w *world, mid uint32, extra time.Duration) func(*flight, *wire.Message) time.Duration {
	held := false
	return func(f *flight, m *wire.Message) time.Duration {
		if !held && !m.IsResponse() && m.Exchange == wire.ExchangeInformational && m.MessageID == mid && f.from == "I" {
			held = true
			w.logf("net: #%d held back %s", mid, extra)
			return extra
		}
		return 0
	}
}

// Scenario 19 (M17, M62): with window 2, UPDATE #3 from I3 overtakes #2 from
// I2; #2 is answered but changes nothing, and R ends on I3.
func TestScenarioReorderedUpdates(t *testing.T) {
	ic, rc := icfg(), rcfg()
	ic.Window, rc.Window = 2, 2
	rc.RequireRR = false
	w, i, r := setup(t, ic, rc, []string{I1, I2, I3}, []string{R1})
	w.delay = holdFirst(w, 2, 300*time.Millisecond)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I3), p4500(R1))))
	w.run(3 * time.Second)
	if indexOf(r.obs, "stale update_sa_addresses") < 0 {
		t.Error("R did not flag #2 as stale")
	}
	wantIKE(t, r, pr(p4500(R1), p4500(I3)))
	wantTraffic(t, r, pr(p4500(R1), p4500(I3)), false)
	wantTraffic(t, i, pr(p4500(I3), p4500(R1)), false)
	w.golden()
}

// Scenario 20 (M34a, M62): request #2 lists {A,B}, #3 lists {C}; #3 arrives
// first; the final set is {src(#3), C}.
func TestScenarioStaleAddressList(t *testing.T) {
	ic, rc := icfg(), rcfg()
	ic.Window, rc.Window = 2, 2
	w, i, r := setup(t, ic, rc, []string{I1}, []string{R1})
	w.delay = holdFirst(w, 2, 300*time.Millisecond)
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I1), ad("192.0.2.101"), ad("192.0.2.102")}), nil)
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I1), ad("192.0.2.103")}), nil)
	w.run(3 * time.Second)
	if got, want := r.peer.PeerAddrs(), []netip.Addr{ad(I1), ad("192.0.2.103")}; !slices.Equal(got, want) {
		t.Errorf("R peer set %v, want %v", got, want)
	}
	if indexOf(r.obs, "stale address list") < 0 {
		t.Error("stale list not flagged")
	}
	w.golden()
}

// Scenario 21 (M32, M33, M16): full replacement, then NO_ADDITIONAL_ADDRESSES
// carried in the update from I2 leaves just {I2}.
func TestScenarioNoAdditionalAddresses(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I1), ad("2001:db8::c")}), nil)
	w.run(2 * time.Second)
	if got := r.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(I1), ad("2001:db8::c")}) {
		t.Fatalf("after list: %v", got)
	}
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I2)}), nil) // waits for the window, then goes from I2
	w.run(5 * time.Second)
	if got := r.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(I2)}) {
		t.Errorf("after NO_ADDITIONAL_ADDRESSES: %v", got)
	}
	wantTraffic(t, r, pr(p4500(R1), p4500(I2)), false)
	w.golden()
}

// Scenario 9 (M24, M30, B10): I moves behind N1; both sides detect the NAT
// from NAT-D and encapsulate ESP.
func TestScenarioNATAppears(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2n}, []string{R1})
	w.addNAT(I2n, N1)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2n), p4500(R1))))
	w.run(5 * time.Second)
	if here, _ := i.peer.NAT(); !here {
		t.Error("I does not see itself behind a NAT")
	}
	if _, peer := r.peer.NAT(); !peer {
		t.Error("R does not see I behind a NAT")
	}
	wantTraffic(t, i, pr(p4500(I2n), p4500(R1)), true)
	wantTraffic(t, r, pr(p4500(R1), N1+":40000"), true)
	w.golden()
}

// Scenarios 14–16 (M53–M56): NAT-T off, so the update carries
// NO_NATS_ALLOWED; N1 rewrites it, R answers UNEXPECTED_NAT_DETECTED to the
// real source and changes nothing; I retries with new requests and reverts.
func TestScenarioNoNATsAllowed(t *testing.T) {
	ic, rc := icfg(), rcfg()
	ic.NATT, rc.NATT = false, false
	ic.RetransmitTries = 2
	w, i, r := setup(t, ic, rc, []string{I1, I2n}, []string{R1})
	w.addNAT(I2n, N1)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(I2n+":500", R1+":500")))
	w.run(5 * time.Second)
	if n := count[UnexpectedNAT](r.obs); n != 3 {
		t.Errorf("R detected %d unexpected NATs, want 3 (1 + 2 retries)", n)
	}
	rej, ok := has[UpdateRejected](i.obs)
	if !ok || rej.Reason != wire.NotifyUnexpectedNATDetected {
		t.Fatalf("I: %v", rej)
	}
	wantIKE(t, r, pr(R1+":500", I1+":500"))
	wantTraffic(t, r, pr(R1+":500", I1+":500"), false)
	wantTraffic(t, i, pr(I1+":500", R1+":500"), false)
	w.golden()
}

// Scenario 17 (M19, M26): R's policy refuses I3; I reverts to I1.
func TestScenarioUnacceptableAddresses(t *testing.T) {
	rc := rcfg()
	rc.Accept = func(_, remote netip.Addr) bool { return remote != ad(I3) }
	w, i, r := setup(t, icfg(), rc, []string{I1, I3}, []string{R1})
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I3), p4500(R1))))
	w.run(3 * time.Second)
	if rej, ok := has[UpdateRejected](i.obs); !ok || rej.Reason != wire.NotifyUnacceptableAddresses {
		t.Fatalf("I: %v", rej)
	}
	wantIKE(t, i, base11())
	wantTraffic(t, i, base11(), false)
	wantTraffic(t, r, resp11(), false)
	w.golden()
}

// Scenario 28 (M27, M33, M65, M66): R loses R1, moves its end to R2 and
// announces {R2}; I replaces R's set and, since R1 is gone, updates to R2.
func TestScenarioResponderAddressChange(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1}, []string{R1, R2})
	r.addrs = []netip.Addr{ad(R2)}
	w.call(r)(r.peer.SetLocalAddrs(w.now, []netip.Addr{ad(R2)}), nil)
	w.run(5 * time.Second)
	if got := i.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(R2)}) {
		t.Errorf("I peer set %v", got)
	}
	wantIKE(t, i, pr(p4500(I1), p4500(R2)))
	wantTraffic(t, i, pr(p4500(I1), p4500(R2)), false)
	wantIKE(t, r, pr(p4500(R2), p4500(I1)))
	wantTraffic(t, r, pr(p4500(R2), p4500(I1)), false)
	w.golden()
}

// Scenario 8/30 and RFC 4621 §6.2 (M44, M57, M58, M60): I2->R1 is dead; the
// probe walks I2 then I3, is answered on I3 after several pairs, so it is
// restarted with a new request on I3 alone, which passes; then I moves.
func TestScenarioPathTestRestart(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2, I3}, []string{R1})
	w.blockBoth(I2, R1)
	w.call(i)(i.peer.TestPaths(w.now, []Pair{pr(p4500(I2), p4500(R1)), pr(p4500(I3), p4500(R1))}))
	w.run(6 * time.Second)
	var results []PathTestResult
	for _, o := range i.obs {
		if x, ok := o.(PathTestResult); ok {
			results = append(results, x)
		}
	}
	if len(results) != 2 || !results[0].Restarted || !results[1].Passed || results[1].Pair != pr(p4500(I3), p4500(R1)) {
		t.Fatalf("results %v", results)
	}
	if results[1].MsgID == results[0].MsgID {
		t.Error("restart reused the Message ID")
	}
	w.call(i)(i.peer.UpdateAddresses(w.now, results[1].Pair))
	w.run(10 * time.Second)
	wantTraffic(t, r, pr(p4500(R1), p4500(I3)), false)
	w.golden()
}

// Scenario 18 and M61: when no candidate answers, the probe falls back to
// the IKE SA pair so the window is freed, and the test fails.
func TestScenarioPathTestAllPairsDead(t *testing.T) {
	w, i, _ := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1, R2})
	w.block(R1, I2) // one-way pair: I2->R1 works, R1->I2 does not
	w.blockBoth(I1, R2)
	w.call(i)(i.peer.TestPaths(w.now, []Pair{pr(p4500(I2), p4500(R1)), pr(p4500(I1), p4500(R2))}))
	w.run(10 * time.Second)
	res, ok := has[PathTestResult](i.obs)
	if !ok || res.Passed || res.Restarted {
		t.Fatalf("result %v", res)
	}
	if closed, _ := i.peer.Closed(); closed {
		t.Fatal("SA closed although the current pair works")
	}
	wantTraffic(t, i, base11(), false)
	w.golden()
}

// Scenarios 31 and 34 (M13, M14, M61): with window 1 and a DPD outstanding on
// a dead pair, two address changes collapse into one UPDATE sent from I3
// after the DPD (retransmitted via I2 and I3) is answered.
func TestScenarioWindowCollapse(t *testing.T) {
	ic := icfg()
	ic.DPDInterval = 5 * time.Second
	w, i, r := setup(t, ic, rcfg(), []string{I1, I2, I3}, []string{R1})
	w.blockBoth(I1, R1)
	w.run(6 * time.Second) // DPD #2 goes out on the dead pair
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I3), p4500(R1))))
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I3)}), nil) // M16: rides on the update
	w.run(12 * time.Second)
	if got := r.peer.PeerAddrs(); !slices.Equal(got, []netip.Addr{ad(I3)}) {
		t.Errorf("R peer set %v", got)
	}
	updates := 0
	for _, line := range w.trace {
		if indexOfStr(line, "I send") && indexOfStr(line, "UPDATE_SA_ADDRESSES") {
			updates++
			if !indexOfStr(line, p4500(I3)+"->") {
				t.Errorf("update not from I3: %s", line)
			}
		}
	}
	if updates != 1 {
		t.Errorf("%d UPDATE_SA_ADDRESSES sent, want 1", updates)
	}
	wantTraffic(t, r, pr(p4500(R1), p4500(I3)), false)
	w.golden()
}

// RFC 4621 §5.5.2 and M69: after I moves to I2, ESP from R still arrives on
// the old pair while R's return routability check is delayed; it does not
// count as liveness, so I's DPD fires on time on the new pair.
func TestScenarioWrongPairNotLiveness(t *testing.T) {
	ic := icfg()
	ic.DPDInterval = 4 * time.Second
	w, i, r := setup(t, ic, rcfg(), []string{I1, I2}, []string{R1})
	dropped := 0
	w.rewrite = func(f *flight, m *wire.Message) bool {
		if f.from == "R" && !m.IsResponse() && m.Notify(wire.NotifyCookie2) != nil && dropped < 3 {
			dropped++
			return false
		}
		return true
	}
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	alive := w.now
	for s := 1; s <= 9; s++ {
		w.run(time.Second + time.Duration(s)*time.Second)
		w.esp(r)
		if s == 1 {
			alive = i.peer.LastAlive()
		}
	}
	w.run(12 * time.Second)
	if count[StrayTraffic](i.obs) == 0 {
		t.Fatal("no stray ESP seen")
	}
	dpd := -1.0
	for _, line := range w.trace {
		if indexOfStr(line, "I send") && indexOfStr(line, "INFORMATIONAL req #3 []") {
			var sec float64
			if _, err := fmtSscan(line, &sec); err == nil {
				dpd = sec
				break
			}
		}
	}
	want := alive.Add(4 * time.Second).Sub(t0).Seconds()
	if dpd < 0 || dpd > want+0.001 {
		t.Errorf("DPD at %.3fs, want %.3fs (last alive %s)", dpd, want, alive.Sub(t0))
	}
	wantTraffic(t, r, pr(p4500(R1), p4500(I2)), false)
	w.golden()
}

// RFC 4621 §5.5.2 case 1: the pair changes while R's check of I2 is running;
// its answer is discarded and a new check of I3 moves the traffic.
func TestScenarioRRRestartOnPairChange(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2, I3}, []string{R1})
	w.rewrite = func(f *flight, m *wire.Message) bool {
		return !(f.from == "R" && !m.IsResponse() && f.dst.Addr() == ad(I2)) // R's check never reaches I2
	}
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.run(3 * time.Second)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I3), p4500(R1))))
	w.run(10 * time.Second)
	f, ok := has[ReturnRoutabilityFailed](r.obs)
	if !ok || !f.Restarted || f.Remote != ap(p4500(I2)) {
		t.Errorf("discarded check: %v", f)
	}
	if p, ok := has[ReturnRoutabilityPassed](r.obs); !ok || p.Remote != ap(p4500(I3)) {
		t.Errorf("passed: %v", p)
	}
	wantTraffic(t, r, pr(p4500(R1), p4500(I3)), false)
	if closed, _ := r.peer.Closed(); closed {
		t.Error("R closed")
	}
	w.golden()
}

// Scenario 32 (M59, B5): a retransmission of an answered request from a new
// source gets the stored response there, byte for byte, with no state change.
func TestScenarioRetransmissionFromNewSource(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.block(R1, I1) // R's answer to the DPD is lost
	ic := i.peer
	ic.cfg.DPDInterval = time.Second
	w.run(3 * time.Second)
	w.unblock(R1, I1)
	w.call(i)(ic.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.run(8 * time.Second)
	resp := 0
	for _, line := range w.trace {
		if indexOfStr(line, "R send "+p4500(R1)+"->"+p4500(I2)+" INFORMATIONAL resp #2") {
			resp++
		}
	}
	if resp != 1 {
		t.Errorf("stored response #2 re-sent to I2 %d times, want 1", resp)
	}
	wantTraffic(t, r, pr(p4500(R1), p4500(I2)), false)
	w.golden()
}

// Scenario 33 (M13, M15, M28): UPDATE #2 from I2 is outstanding (its answers
// are lost) when I moves to I3. #2 is retransmitted via I3, R re-sends its
// stored response there without acting, the reply gets no MOBIKE processing,
// and a new UPDATE #3 from I3 follows; R ends on I3.
func TestScenarioAddressChangeDuringUpdate(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2, I3}, []string{R1})
	w.block(R1, I2)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.run(2500 * time.Millisecond)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I3), p4500(R1))))
	w.run(10 * time.Second)
	if indexOf(i.obs, "reply to superseded update") < 0 {
		t.Error("reply to #2 was processed")
	}
	c, ok := has[UpdateConfirmed](i.obs)
	if !ok || c.MsgID != 3 || c.Pair != pr(p4500(I3), p4500(R1)) {
		t.Errorf("confirmed %v", c)
	}
	wantIKE(t, r, pr(p4500(R1), p4500(I3)))
	wantTraffic(t, r, pr(p4500(R1), p4500(I3)), false)
	if p, ok := has[ReturnRoutabilityPassed](r.obs); !ok || p.Remote != ap(p4500(I3)) {
		t.Errorf("rr %v", p)
	}
	w.golden()
}

// Scenario 22 (M35): the request carrying I's address list was
// retransmitted from I1 and then from I2, so afterwards the list is sent
// again in a new request (here riding on the update, M16).
func TestScenarioListRetransmittedFromTwoSources(t *testing.T) {
	w, i, r := setup(t, icfg(), rcfg(), []string{I1, I2}, []string{R1})
	w.block(R1, I1) // answers to I1 are lost
	w.call(i)(i.peer.SetLocalAddrs(w.now, []netip.Addr{ad(I1), ad(I2)}), nil)
	w.run(1500 * time.Millisecond)
	w.call(i)(i.peer.UpdateAddresses(w.now, pr(p4500(I2), p4500(R1))))
	w.run(8 * time.Second)
	lists := 0
	for _, o := range r.obs {
		if x, ok := o.(PeerAddressesChanged); ok && x.MsgID > 2 {
			lists++
			if !slices.Equal(x.Addrs, []netip.Addr{ad(I2), ad(I1)}) {
				t.Errorf("list %v", x.Addrs)
			}
		}
	}
	if lists != 1 {
		t.Errorf("%d new list requests after #2, want 1", lists)
	}
	w.golden()
}
