package sim_test

import (
	"testing"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/sim"
	"github.com/mobiked/mobiked/policy"
)

// Steering groups: connections whose peer address sets overlap share one
// pair (routes steer per destination address, prohibits are host-wide).

// checkRouting makes w check the routing state's invariants after every
// step (mobike.CheckInvariants), and counts the routing states.
func checkRouting(t *testing.T, w *sim.World) *int {
	t.Helper()
	n := new(int)
	w.Check = func(acts []mobike.Action) {
		for _, a := range acts {
			r, ok := a.(mobike.ActRouting)
			if !ok {
				continue
			}
			*n++
			if err := mobike.CheckInvariants(r.State, w.Ctl.Snapshot()); err != nil {
				t.Fatalf("%s: %v:\n%s", w.Now.Sub(sim.Epoch), err, r.State)
			}
		}
	}
	return n
}

// twoGateways: office and backup both reach the gateway at peer1 and peer2.
func twoConns(t *testing.T, pol policy.Settings) *sim.World {
	w := laptop(t, topo{eth: true, wlan: true, pol: pol})
	checkRouting(t, w)
	w.Charon.AddConn("office", peer1, peer2)
	w.Charon.AddConn("backup", peer1, peer2)
	w.Charon.Initiate("office", true)
	w.Charon.Initiate("backup", true)
	w.Start()
	return w
}

// Two connections to one gateway with disjoint allowed uplinks: one group,
// one pair, chosen for the connection listed first; the other is reported
// as a policy conflict (trace, alert, explain), and no peer address of
// either is ever unreachable. When office's uplink dies the group follows
// backup's policy; when it returns, office's after the hold-down.
func TestScenarioGroupPolicyConflict(t *testing.T) {
	// (A loss SLA the simulated prober's 10-probe window cannot breach
	// before the pair is down: this is about path-down, not SLAs.)
	sla := policy.SLA{MaxLoss: 0.5}
	pol := policy.Settings{Conns: []policy.ConnPolicy{
		{Name: "office", AllowedUplinks: []string{"eth0"}, HoldDown: 5 * sec(1), SLA: sla},
		{Name: "backup", AllowedUplinks: []string{"wlan0"}, SLA: sla},
	}}
	w := twoConns(t, pol)
	w.Run(sec(10))
	wantPair(t, w, "office", pair(ethA, peer1))
	wantPair(t, w, "backup", pair(ethA, peer1))
	st := w.Ctl.Snapshot()
	for _, cv := range st.Conns {
		if cv.Group != "backup(+1)" || cv.Lead != "office" {
			t.Errorf("%s: group %q lead %q, want backup(+1) led by office", cv.Name, cv.Group, cv.Lead)
		}
		if (cv.Conflict != "") != (cv.Name == "backup") {
			t.Errorf("%s: conflict %q", cv.Name, cv.Conflict)
		}
	}
	if count(w, "act alert warning backup policy-conflict") != 1 {
		t.Error("want one policy-conflict alert for backup")
	}
	w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
	w.Run(sec(5))
	// Forced: the candidates are confirmed first; office's (on the dead
	// uplink) stay silent, backup's answer, and the first of them moves the
	// local address only (peer1 answers on wlan0), so the conflict moves to
	// office.
	wantPair(t, w, "office", pair(wlanA, peer1))
	wantPair(t, w, "backup", pair(wlanA, peer1))
	if count(w, "act alert warning office policy-conflict") != 1 || count(w, "policy-conflict-resolved backup") != 1 {
		t.Error("want the conflict to move to office")
	}
	w.SetLinkImpair("eth0", sim.Impair{})
	w.Run(sec(20))
	wantPair(t, w, "office", pair(ethA, peer1))
	if count(w, "forced path-down") != 1 || count(w, "=> 10.1.0.2->10.3.0.2 better-path") != 1 {
		t.Error("want one forced path-down move and one better-path failback")
	}
	checkGolden(t, w)
}

// SAs of one group on different pairs (charon brought backup up on another
// path before mobiked ran) are regrouped onto the leading member's pair.
func TestScenarioGroupRegroupsSplitSAs(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	checkRouting(t, w)
	w.Charon.AddConn("office", peer1)
	w.Charon.AddConn("backup", peer1)
	w.SetLinkUp("eth0", false)
	w.Charon.Initiate("office", true) // on wlan
	w.SetLinkUp("eth0", true)
	w.Charon.Initiate("backup", true) // on eth
	w.Start()
	w.Run(sec(5))
	// backup sorts first (neither is listed in the config): its pair wins.
	wantPair(t, w, "office", pair(ethA, peer1))
	wantPair(t, w, "backup", pair(ethA, peer1))
	if count(w, "steer-requested backup(+1) 10.1.0.2->10.3.0.2 => 10.1.0.2->10.3.0.2 regroup") != 1 || count(w, "steer-confirmed backup(+1)") != 1 {
		t.Error("want one confirmed regroup steer")
	}
	checkGolden(t, w)
}

// A connection that goes away (SA terminated, connection unloaded) releases
// what only it needed: here the prohibit rule of an address only it knew.
func TestScenarioGroupReleaseOnUnload(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	checkRouting(t, w)
	w.Charon.AddConn("office", peer1, peer2)
	w.Charon.AddConn("extra", peer1, "10.6.0.2")
	w.Charon.Initiate("office", true)
	w.Charon.Initiate("extra", true)
	w.Start()
	w.Run(sec(5))
	if !w.Prohibited("10.6.0.2") || !w.Prohibited(peer2) {
		t.Fatalf("want 10.6.0.2 and %s prohibited, kernel:\n%s", peer2, w.Kernel())
	}
	w.Charon.Terminate("extra")
	w.Charon.Unload("extra", sec(30))
	w.Run(sec(1))
	if !w.Prohibited("10.6.0.2") {
		t.Error("10.6.0.2 released while extra is still loaded")
	}
	w.Run(sec(30))
	if w.Prohibited("10.6.0.2") || !w.Prohibited(peer2) {
		t.Errorf("after unload: want only %s prohibited, kernel:\n%s", peer2, w.Kernel())
	}
	if g := w.Kernel().Groups; len(g) != 1 || len(g[0].Members) != 1 || g[0].Members[0] != "office" {
		t.Errorf("groups after unload: %+v", g)
	}
	checkGolden(t, w)
}

// A crash in the middle of a remote move can leave both addresses of the
// peer prohibited; the restarted controller's first routing state replaces
// that, without moving the SA.
func TestScenarioRestartRepairsHalfAppliedMove(t *testing.T) {
	w := laptop(t, topo{eth: true, wlan: true})
	checkRouting(t, w)
	w.Charon.AddConn("office", peer1, peer2)
	w.Charon.Initiate("office", true)
	w.Start()
	w.Run(sec(5))
	w.SetProhibit(peer1, true) // added by a remote move that never finished
	w.RestartController(sim.Options{})
	w.Run(sec(1))
	if w.Prohibited(peer1) || !w.Prohibited(peer2) {
		t.Errorf("after restart: kernel\n%s", w.Kernel())
	}
	wantPair(t, w, "office", pair(ethA, peer1))
	if n := count(w, "steer-requested"); n != 0 {
		t.Errorf("%d steers, want none", n)
	}
	checkGolden(t, w)
}
