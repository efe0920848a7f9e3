package sim_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/sim"
	"github.com/mobiked/mobiked/policy"
)

// Scenarios from mobike-digest.md §5 and RFC 4621 §3/§5 at the decision
// level. Each asserts the final path and compares the whole decision trace
// with testdata/<name>.golden (go test -update to accept a change).

func office(t *testing.T, tp topo) *sim.World {
	w := laptop(t, tp)
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	return w
}

// Silent blackhole (link stays up, upstream dead): charon alone never
// leaves it (lab-notes); the prober's K consecutive losses do.
func TestScenarioSilentBlackhole(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(15))
	wantPair(t, w, "office", pair(ethA, peer1))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// A restart of the controller with SAs on a fine pair adopts it: no move.
func TestScenarioStartupAdoptsCurrentPair(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true, wwan: true})
	w.Run(sec(60))
	wantPair(t, w, "office", pair(ethA, peer1))
	if n := count(w, "steer-requested"); n != 0 {
		t.Errorf("%d steers, want none", n)
	}
	checkGolden(t, w)
}

// §5 scenario 7: break-before-make. The only address disappears for 60 s;
// when a new uplink comes up, the SA moves there.
func TestScenarioBreakBeforeMake(t *testing.T) {
	w := laptop(t, topo{eth: true})
	w.AddUplink(sim.UplinkSpec{Name: "wlan0", Kind: mobike.KindWLAN, Addrs: []string{wlanA + "/24"}, Gateways: []string{"10.2.0.1"}, Metric: 200, Down: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.DelAddr(ethA + "/24")
	w.SetLinkUp("eth0", false)
	w.Run(sec(60))
	wantPair(t, w, "office", pair(ethA, peer1)) // nowhere to go
	w.SetLinkUp("wlan0", true)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// §5 scenario 6: make-before-break. The SA is on wlan; ethernet comes up and
// is tested first; the move happens after the hold-down, old path still up.
func TestScenarioMakeBeforeBreak(t *testing.T) {
	w := laptop(t, topo{wlan: true})
	w.AddUplink(sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Addrs: []string{ethA + "/24"}, Gateways: []string{"10.1.0.1"}, Metric: 100, Down: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.SetLinkUp("eth0", true)
	w.Run(sec(9))
	wantPair(t, w, "office", pair(wlanA, peer1)) // hold-down not over
	w.Run(sec(3))
	wantPair(t, w, "office", pair(ethA, peer1))
	checkGolden(t, w)
}

// §5 scenario 8: multihoming failover to the peer's second address (both in
// remote_addrs). The dead address is prohibited so charon cannot pick it.
func TestScenarioMultihomingFailover(t *testing.T) {
	w := laptop(t, topo{eth: true})
	w.Charon.AddConn("office", peer1, peer2)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.SetPeerDown(peer1, true)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(ethA, peer2))
	checkGolden(t, w)
}

// The peer's second address comes from the policy (ExtraPeers), as charon's
// ADDITIONAL_*_ADDRESS list is not visible over VICI.
func TestScenarioExtraPeerFromConfig(t *testing.T) {
	pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", ExtraPeers: []netip.Addr{netip.MustParseAddr(peer2)}}}}
	w := laptop(t, topo{eth: true, pol: pol})
	w.Charon.AddConn("office", peer1)
	w.Charon.AddPeerAddr("office", peer2)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.SetPeerDown(peer1, true)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(ethA, peer2))
	checkGolden(t, w)
}

// A peer address only charon knows shows up in an unexpected ike-update:
// the controller learns it, tests it and keeps the SA there.
func TestScenarioUnknownPeerLearnedFromIKEUpdate(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.AddPeerAddr("office", peer2)
	w.Charon.Initiate("office", true)
	w.Start()
	w.SetPairImpair(wlanA, peer1, sim.Impair{Blackhole: true})
	w.Run(sec(5))
	w.SetLinkUp("eth0", false)
	w.Run(sec(10))
	wantPair(t, w, "office", pair(wlanA, peer2))
	if count(w, "peer-learned office 10.4.0.2") != 1 {
		t.Error("peer 10.4.0.2 not learned")
	}
	checkGolden(t, w)
}

// Multihomed laptop: an SA that came up on wwan moves to ethernet (after the
// hold-down); when ethernet dies it goes to wlan, not wwan.
func TestScenarioMultihomedPriorities(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true, wwan: true})
	w.Charon.AddConn("office", peer1)
	w.SetLinkUp("eth0", false)
	w.SetLinkUp("wlan0", false)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(1))
	w.SetLinkUp("eth0", true)
	w.SetLinkUp("wlan0", true)
	w.Run(sec(15))
	wantPair(t, w, "office", pair(ethA, peer1))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	if p := w.Probing(wwanA, peer1); p != "metered-standby" {
		t.Errorf("wwan pair probed %q, want metered-standby", p)
	}
	checkGolden(t, w)
}

// §5 scenario 18: a pair that passes requests but not replies is never
// operational, so the SA is never moved there although it ranks first.
func TestScenarioUnidirectionalPairNeverUsed(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.SetLinkUp("eth0", false)
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	w.SetLinkImpair("eth0", sim.Impair{OneWay: true})
	w.SetLinkUp("eth0", true)
	w.Run(sec(30))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// The current pair turns one-way: treated as broken, the SA leaves it.
func TestScenarioUnidirectionalCurrentPair(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{OneWay: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// §5 scenarios 9/10: moving behind a NAT (wlan) and back out (ethernet),
// NAT allowed.
func TestScenarioMoveBehindNATAndBack(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.SetLinkImpair("wlan0", sim.Impair{NAT: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.SetLinkUp("eth0", false)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	w.SetLinkUp("eth0", true)
	w.Run(sec(15))
	wantPair(t, w, "office", pair(ethA, peer1))
	checkGolden(t, w)
}

// RFC 4621 §5.1.6 NAT prevention: the connection forbids NAT, the only other
// pair is NATed: stay put and alert nat-forbidden.
func TestScenarioNATForbidStaysPut(t *testing.T) {
	w := natForbidBlackhole(t, false, sec(5), sec(10))
	wantPair(t, w, "office", pair(ethA, peer1))
	if count(w, "act alert critical office nat-forbidden") != 1 {
		t.Error("want one nat-forbidden alert")
	}
	if count(w, "steer-requested") != 0 {
		t.Error("steered onto a NATed pair")
	}
	checkGolden(t, w)
}

// NAT forbidden, but a third, NAT-free pair exists: it is chosen although
// the NATed one ranks higher.
func TestScenarioNATForbidPicksNATFreePair(t *testing.T) {
	w := natForbidBlackhole(t, true, sec(10), sec(5))
	wantPair(t, w, "office", pair(wwanA, peer1))
	checkGolden(t, w)
}

// A NAT appears on the current pair of a NAT-forbidding connection: it
// leaves for a NAT-free pair at once.
func TestScenarioNATAppearsOnCurrentPair(t *testing.T) {
	pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", NAT: policy.NATForbid}}}
	w := office(t, topo{eth: true, wlan: true, pol: pol})
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{NAT: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

func dualStack(t *testing.T) *sim.World {
	w := laptop(t, topo{eth: true, v6: true})
	w.Charon.AddConn("office", peer6, peer1)
	w.SetPairImpair(ethA, peer1, sim.Impair{Latency: 5 * time.Millisecond}) // v6 answers first
	w.Charon.Initiate("office", true)
	w.Start()
	return w
}

// v6 → v4 fallback: the peer has both; the v6 path dies, the SA moves to v4.
func TestScenarioV6ToV4Fallback(t *testing.T) {
	w := dualStack(t)
	w.Run(sec(15))
	wantPair(t, w, "office", pair(eth6, peer6))
	w.SetPairImpair(eth6, peer6, sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(ethA, peer1))
	checkGolden(t, w)
}

// After the fallback, v6 recovers: a working SA is not moved just to change
// family (the ranking keeps the current family); when v4 dies, it goes back
// to v6.
func TestScenarioV4ToV6WhenV4Dies(t *testing.T) {
	w := dualStack(t)
	w.Run(sec(15))
	w.SetPairImpair(eth6, peer6, sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(ethA, peer1))
	w.SetPairImpair(eth6, peer6, sim.Impair{})
	w.Run(sec(40))
	wantPair(t, w, "office", pair(ethA, peer1))
	if n := count(w, "steer-requested"); n != 1 {
		t.Errorf("%d steers, want only the fallback", n)
	}
	w.SetPairImpair(ethA, peer1, sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(eth6, peer6))
	checkGolden(t, w)
}

// Failback to ethernet only after it has been stably operational for the
// hold-down (10 s), not before.
func TestScenarioFailbackAfterHoldDown(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	w.SetLinkImpair("eth0", sim.Impair{})
	w.Run(sec(9))
	wantPair(t, w, "office", pair(wlanA, peer1))
	w.Run(sec(25))
	wantPair(t, w, "office", pair(ethA, peer1))
	checkHoldDown(t, w, "office", pair(ethA, peer1), sec(10))
	checkGolden(t, w)
}

// Ethernet recovers for 5 s and dies again: no failback ever happens.
func TestScenarioNoFailbackBeforeHoldDown(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	for i := 0; i < 3; i++ {
		w.SetLinkImpair("eth0", sim.Impair{})
		w.Run(sec(5))
		w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
		w.Run(sec(5))
	}
	wantPair(t, w, "office", pair(wlanA, peer1))
	if n := count(w, "steer-requested"); n != 1 {
		t.Errorf("%d steers, want 1", n)
	}
	checkGolden(t, w)
}

// A link that flaps slower than the hold-down would cause a failback per
// cycle; the move budget (3 per 60 s) bounds the moves and alerts.
func TestScenarioFlappingUplinkMoveBudget(t *testing.T) {
	w := flappingEth(t)
	if n := count(w, "move-budget-exhausted office"); n < 1 {
		t.Errorf("move budget never exhausted")
	}
	if n := count(w, "steer-requested office") - count(w, "forced"); n > 3 {
		t.Errorf("%d failbacks in 60 s, budget is 3", n)
	}
	wantPair(t, w, "office", pair(ethA, peer1))
	checkGolden(t, w)
}

// All uplinks go down; the SA stays where it is (no-path alert); one uplink
// returns and the SA moves there.
func TestScenarioAllUplinksDownThenOneReturns(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.SetLinkUp("eth0", false)
	w.SetLinkUp("wlan0", false)
	w.Run(sec(20))
	if count(w, "no-path office") != 1 {
		t.Error("want one no-path observation")
	}
	w.SetLinkUp("wlan0", true)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// A restart of mobiked while the SA is on its (fine) failover pair and the
// better pair is not yet tested: no move during the hold-down.
func TestScenarioControllerRestartNoMove(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.RestartController(sim.Options{})
	w.Run(sec(30))
	wantPair(t, w, "office", pair(ethA, peer1))
	if n := count(w, "steer-requested"); n != 0 {
		t.Errorf("%d steers after restart, want none", n)
	}
	checkGolden(t, w)
}

// Restart while on the failover pair and ethernet still blackholed: the
// controller adopts wlan and does not try ethernet.
func TestScenarioControllerRestartOnFailoverPair(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	w.RestartController(sim.Options{})
	w.Run(sec(30))
	wantPair(t, w, "office", pair(wlanA, peer1))
	if n := count(w, "steer-requested"); n != 1 {
		t.Errorf("%d steers, want only the failover before the restart", n)
	}
	checkGolden(t, w)
}

// charon restarts: the SAs go away, come back with new IDs; the controller
// resyncs from the SA list and steers only where policy says.
func TestScenarioCharonRestartResync(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.Charon.Restart(sec(2))
	w.Run(sec(20))
	wantPair(t, w, "office", pair(ethA, peer1))
	if n := count(w, "steer-requested"); n != 0 {
		t.Errorf("%d steers, want none", n)
	}
	checkGolden(t, w)
}

// charon without prefer_best_path ignores the steer: the steer fails after
// the timeout with an alert, and retries back off exponentially.
func TestScenarioSteerNotConfirmed(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Charon.PreferBestPath = false
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(120))
	wantPair(t, w, "office", pair(ethA, peer1))
	fails := count(w, "steer-failed office")
	if fails < 2 || fails > 5 {
		t.Errorf("%d failed steers in 120 s, want a few (backoff 10 s, 20 s, 40 s...)", fails)
	}
	if count(w, "steer-unconfirmed") != fails {
		t.Errorf("want one alert per failed steer")
	}
	checkGolden(t, w)
}

// The actuator fails to install the routes: the steer fails at once.
func TestScenarioSteerApplyError(t *testing.T) {
	w := steerApplyError(t)
	if count(w, "steer-apply-failed") != 1 {
		t.Error("want one steer-apply-failed alert")
	}
	w.SteerErr = nil
	w.Run(sec(10))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// Loss above the SLA (30% > 10%) on the current pair: replies still come
// (degraded), and the SA moves to the pair of the same class that meets the
// SLA.
func dualWAN(t *testing.T, seed uint64) *sim.World {
	w := sim.New(sim.Options{Seed: seed})
	w.AddUplink(sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Addrs: []string{ethA + "/24"}, Gateways: []string{"10.1.0.1"}, Metric: 100, Latency: 10 * time.Millisecond})
	w.AddUplink(sim.UplinkSpec{Name: "eth1", Kind: mobike.KindEthernet, Addrs: []string{wlanA + "/24"}, Gateways: []string{"10.2.0.1"}, Metric: 200, Latency: 30 * time.Millisecond})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	return w
}

// The SLA decides within a priority class (ranking: priority → SLA → cost →
// RTT): a branch with two ethernet uplinks.
func TestScenarioLossAboveSLAMoves(t *testing.T) {
	w := dualWAN(t, 3)
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Loss: 0.3})
	w.Run(sec(20))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// RTT above the SLA (800 ms > 500 ms) on the current pair: degraded, move.
func TestScenarioRTTAboveSLAMoves(t *testing.T) {
	w := dualWAN(t, 1)
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Latency: 800 * time.Millisecond})
	w.Run(sec(10))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// The responder side never steers (RFC 4621 §5.1.5): monitor only.
func TestScenarioResponderNeverSteers(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", false)
	w.Start()
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(10))
	wantPair(t, w, "office", pair(ethA, peer1))
	if count(w, "steer-requested") != 0 {
		t.Error("responder SA steered")
	}
	checkGolden(t, w)
}

func v6only(t *testing.T) *sim.World {
	w := sim.New(sim.Options{Seed: 1})
	w.AddUplink(sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Addrs: []string{eth6 + "/64"}, Gateways: []string{"2001:db8:1::1"}, Metric: 100})
	w.AddUplink(sim.UplinkSpec{Name: "wlan0", Kind: mobike.KindWLAN, Addrs: []string{"2001:db8:2::2/64"}, Gateways: []string{"2001:db8:2::1"}, Metric: 200})
	w.Charon.AddConn("office", peer6)
	return w
}

// An IPv6 address is not available while tentative: no pair, no probe, no
// move until DAD completes.
func TestScenarioIPv6TentativeNotUsed(t *testing.T) {
	w := v6only(t)
	w.SetLinkUp("eth0", false)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(2))
	w.SetLinkUp("eth0", true)
	w.DelAddr(eth6 + "/64")
	w.AddAddr("eth0", "2001:db8:1::22/64", sim.AddrOpts{DAD: sec(2)})
	w.Run(sec(1))
	if p := w.Probing("2001:db8:1::22", peer6); p != "" {
		t.Errorf("tentative address probed (%s)", p)
	}
	w.Run(sec(15))
	wantPair(t, w, "office", pair("2001:db8:1::22", peer6))
	checkGolden(t, w)
}

// DAD fails: the address is never used.
func TestScenarioIPv6DADFailed(t *testing.T) {
	w := v6only(t)
	w.SetLinkUp("eth0", false)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(2))
	w.DelAddr(eth6 + "/64")
	w.AddAddr("eth0", "2001:db8:1::22/64", sim.AddrOpts{DAD: sec(2), DADFail: true})
	w.SetLinkUp("eth0", true)
	w.Run(sec(20))
	wantPair(t, w, "office", pair("2001:db8:2::2", peer6))
	checkGolden(t, w)
}

// The current address is deprecated (preferred lifetime over) and a fresh
// one exists on the same uplink: the SA moves to the fresh one after the
// hold-down, before the old one's valid lifetime ends.
func TestScenarioDeprecatedAddress(t *testing.T) {
	w := v6only(t)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(2))
	w.AddAddr("eth0", "2001:db8:1::33/64", sim.AddrOpts{})
	w.Run(sec(15))
	wantPair(t, w, "office", pair(eth6, peer6)) // equal: no move for nothing
	w.AddAddr("eth0", "2001:db8:1::44/64", sim.AddrOpts{Preferred: sec(1), Valid: sec(60)})
	w.Run(sec(20))
	w.DelAddr(eth6 + "/64")
	w.Run(sec(5))
	wantPair(t, w, "office", pair("2001:db8:1::33", peer6))
	checkGolden(t, w)
}

// An address whose preferred lifetime ends is left for a fresh one.
func TestScenarioCurrentAddressDeprecated(t *testing.T) {
	w := sim.New(sim.Options{Seed: 1})
	w.AddUplink(sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Gateways: []string{"2001:db8:1::1"}, Metric: 100})
	w.AddUplink(sim.UplinkSpec{Name: "wlan0", Kind: mobike.KindWLAN, Addrs: []string{"2001:db8:2::2/64"}, Gateways: []string{"2001:db8:2::1"}, Metric: 200})
	w.Charon.AddConn("office", peer6)
	w.AddAddr("eth0", "2001:db8:1::aa/64", sim.AddrOpts{Preferred: sec(20), Valid: sec(120)})
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.AddAddr("eth0", "2001:db8:1::bb/64", sim.AddrOpts{})
	w.Run(sec(40))
	wantPair(t, w, "office", pair("2001:db8:1::bb", peer6))
	checkGolden(t, w)
}

// A config reload that excludes the active uplink: the SA leaves it at once.
func TestScenarioConfigRemovesActiveUplink(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.Note("reload: exclude eth0")
	w.Deliver(mobike.EvConfig{Policy: policy.Settings{Uplinks: []policy.UplinkPolicy{{Name: "eth0", Exclude: true}}}})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	if p := w.Probing(ethA, peer1); p != "" {
		t.Errorf("excluded uplink still probed (%s)", p)
	}
	checkGolden(t, w)
}

// A reload restricting the connection to wlan: it leaves ethernet at once.
func TestScenarioConfigDisallowsUplinkForConn(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.Note("reload: office only on wlan")
	w.Deliver(mobike.EvConfig{Policy: policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", AllowedUplinks: []string{"wlan"}}}}})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// Operator override: prefer wlan for 20 s (no hold-down), then back to
// ethernet (it has been stable all along).
func TestScenarioOperatorPrefer(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(15))
	w.Note("mobikectl prefer office wlan0 for 20s")
	w.Deliver(mobike.EvPrefer{Conn: "office", Uplink: "wlan0", Until: w.Now.Add(sec(20))})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	w.Run(sec(20))
	wantPair(t, w, "office", pair(ethA, peer1))
	checkGolden(t, w)
}

// Several SAs of one connection move together; the steer is confirmed when
// all of them are on the pair.
func TestScenarioManySAsOneConnection(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.Charon.AddConn("office", peer1)
	for i := 0; i < 3; i++ {
		w.Charon.Initiate("office", true)
	}
	w.Start()
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	if count(w, "steer-confirmed office") != 1 {
		t.Error("want one confirmation for the connection")
	}
	checkGolden(t, w)
}

// Two connections to the same peer share the pairs: each pair is probed
// once; both are steered.
func TestScenarioConnectionsSharePairs(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.AddConn("backup", peer1)
	w.Charon.Initiate("office", true)
	w.Charon.Initiate("backup", true)
	w.Start()
	w.Run(sec(5))
	if n := count(w, "pair-added"); n != 2 {
		t.Errorf("%d pairs, want 2 shared ones", n)
	}
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	wantPair(t, w, "backup", pair(wlanA, peer1))
	checkGolden(t, w)
}

// Link down: charon roams by itself within ~0.1 s; the controller has
// already put the next-best route in place, so charon lands on it.
func TestScenarioLinkDownCharonLandsOnPolicyPair(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true, wwan: true})
	w.Run(sec(5))
	w.SetLinkUp("eth0", false)
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// An IKE_SA rekey replaces the SA on the same pair: no move, the new SA is
// tracked (and steered later).
func TestScenarioRekeyKeepsPair(t *testing.T) {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(5))
	w.Charon.Rekey(1)
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	checkGolden(t, w)
}

// Metered uplinks are probed gently while standby and used only when
// nothing else works.
func TestScenarioMeteredUplinkLastResort(t *testing.T) {
	w := office(t, topo{eth: true, wwan: true})
	w.Run(sec(30))
	if p := w.Probing(wwanA, peer1); p != "metered-standby" {
		t.Errorf("wwan probed %q", p)
	}
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(10))
	wantPair(t, w, "office", pair(wwanA, peer1))
	if p := w.Probing(wwanA, peer1); p != "active" {
		t.Errorf("wwan probed %q after the move, want active", p)
	}
	checkGolden(t, w)
}

// lab-notes "Trap": charon probes every peer address it knows. Steered to
// (wlan, peer1), it lands on (eth, peer2) — an address only charon knew —
// because that answered first. The controller learns peer2 from the
// ike-update, steers again with peer2 prohibited, and converges.
func TestScenarioSteerDivertedToUnknownPeer(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.AddPeerAddr("office", peer2)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(15))
	w.Note("mobikectl prefer office wlan0 for 60s")
	w.Deliver(mobike.EvPrefer{Conn: "office", Uplink: "wlan0", Until: w.Now.Add(sec(60))})
	w.Run(sec(5))
	wantPair(t, w, "office", pair(wlanA, peer1))
	if count(w, "peer-learned office 10.4.0.2") != 1 || count(w, "=> 10.2.0.2->10.3.0.2 manual") != 2 {
		t.Error("want the peer learned and a second steer prohibiting it")
	}
	if count(w, "act alert") != 0 {
		t.Error("a diversion to an unknown peer address is not an operator problem")
	}
	checkGolden(t, w)
}

// The worlds below serve a scenario test here and TestEveryCauseOccurs.

// natForbidBlackhole: office forbids NAT, wlan0 is NATed (wwan0, NAT-free,
// too when wwan), eth0 (the current uplink) is blackholed after settle and
// the world runs for after more.
func natForbidBlackhole(t *testing.T, wwan bool, settle, after time.Duration) *sim.World {
	pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", NAT: policy.NATForbid}}}
	w := laptop(t, topo{eth: true, wlan: true, wwan: wwan, pol: pol})
	w.SetLinkImpair("wlan0", sim.Impair{NAT: true})
	w.Charon.AddConn("office", peer1)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(settle)
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(after)
	return w
}

// flappingEth: eth0 is blackholed for 3 s every 25 s, four times.
func flappingEth(t *testing.T) *sim.World {
	w := office(t, topo{eth: true, wlan: true})
	w.Run(sec(2))
	for range 4 {
		w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
		w.Run(sec(3))
		w.SetLinkImpair("eth0", sim.Impair{})
		w.Run(sec(22))
	}
	return w
}

// steerApplyError: the actuator fails, and eth0 is blackholed after 5 s;
// 10 s.
func steerApplyError(t *testing.T) *sim.World {
	w := office(t, topo{eth: true, wlan: true})
	w.SteerErr = errors.New("netlink: operation not permitted")
	w.Run(sec(5))
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	return w
}
