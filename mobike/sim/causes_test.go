package sim_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/sim"
	"github.com/mobiked/mobiked/policy"
)

// TestEveryCauseOccurs drives, for every steer cause, failure cause and
// alert reason, a scenario that produces it. The metrics export these enums
// as closed label sets (mobike_steer_total, mobike_steer_failures_total,
// mobike_alerts_total): a value no scenario can produce is a label that can
// never occur, and fails here.
func TestEveryCauseOccurs(t *testing.T) {
	steers := map[mobike.SteerCause]bool{}
	fails := map[mobike.FailCause]bool{}
	alerts := map[mobike.AlertReason]bool{}
	collect := func(w *sim.World) {
		for _, o := range w.Observations {
			switch o := o.(type) {
			case mobike.SteerRequested:
				steers[o.Cause] = true
			case mobike.SteerFailed:
				fails[o.Cause] = true
			}
		}
		for _, a := range w.Alerts {
			alerts[a.Reason] = true
		}
	}
	// pending starts a steer that charon never confirms (no
	// prefer_best_path): a blackhole of eth0 forces a move to wlan.
	pending := func(t *testing.T) *sim.World {
		w := office(t, topo{eth: true, wlan: true, wwan: true})
		w.Charon.PreferBestPath = false
		w.Run(sec(5))
		w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
		w.Run(sec(2))
		if count(w, "steer-requested office") != 1 {
			t.Fatalf("no pending steer:\n%s", tail(w.Trace(), 20))
		}
		return w
	}
	scenarios := map[string]func(t *testing.T) *sim.World{
		// path-down, better-path, unconfirmed and its alert
		"blackhole and failback": func(t *testing.T) *sim.World {
			w := office(t, topo{eth: true, wlan: true})
			w.Run(sec(5))
			w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
			w.Run(sec(5))
			w.SetLinkImpair("eth0", sim.Impair{})
			w.Run(sec(20))
			return w
		},
		"not allowed after a reload": func(t *testing.T) *sim.World {
			w := office(t, topo{eth: true, wlan: true})
			w.Run(sec(5))
			w.Deliver(mobike.EvConfig{Policy: policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", AllowedUplinks: []string{"wlan"}}}}})
			w.Run(sec(5))
			return w
		},
		"sla breach": func(t *testing.T) *sim.World {
			w := dualWAN(t, 3)
			w.Run(sec(5))
			w.SetLinkImpair("eth0", sim.Impair{Loss: 0.3})
			w.Run(sec(20))
			return w
		},
		"operator prefer": func(t *testing.T) *sim.World {
			w := office(t, topo{eth: true, wlan: true})
			w.Run(sec(15))
			w.Deliver(mobike.EvPrefer{Conn: "office", Uplink: "wlan0", Until: w.Now.Add(sec(20))})
			w.Run(sec(5))
			return w
		},
		"regroup and policy conflict": func(t *testing.T) *sim.World {
			pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", AllowedUplinks: []string{"wlan0"}}, {Name: "backup", AllowedUplinks: []string{"eth0"}}}}
			w := laptop(t, topo{eth: true, wlan: true, pol: pol})
			w.Charon.AddConn("office", peer1)
			w.Charon.AddConn("backup", peer1)
			w.SetLinkUp("eth0", false)
			w.Charon.Initiate("office", true)
			w.SetLinkUp("eth0", true)
			w.Charon.Initiate("backup", true)
			w.Start()
			w.Run(sec(5))
			return w
		},
		"unconfirmed": func(t *testing.T) *sim.World {
			w := pending(t)
			w.Run(sec(5))
			return w
		},
		"kernel error": steerApplyError,
		"charon goes away during a steer": func(t *testing.T) *sim.World {
			w := pending(t)
			w.Charon.Restart(sec(1))
			w.Run(sec(3))
			return w
		},
		"charon lands on another known pair": func(t *testing.T) *sim.World {
			w := pending(t)
			// charon moves on its own (e.g. an address event) to a pair the
			// core knows, not the steered one.
			w.Deliver(mobike.EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.MustParseAddrPort(wwanA + ":4500"), NewRemote: netip.MustParseAddrPort(peer1 + ":4500")})
			w.Run(sec(1))
			return w
		},
		"charon lands on an unknown peer address": func(t *testing.T) *sim.World {
			w := laptop(t, topo{eth: true, wlan: true})
			w.Charon.AddConn("office", peer1)
			w.Charon.AddPeerAddr("office", peer2)
			w.Charon.Initiate("office", true)
			w.Start()
			w.Run(sec(15))
			w.Deliver(mobike.EvPrefer{Conn: "office", Uplink: "wlan0", Until: w.Now.Add(sec(60))})
			w.Run(sec(5))
			return w
		},
		"target dies during the steer": func(t *testing.T) *sim.World {
			w := pending(t)
			w.SetLinkImpair("wlan0", sim.Impair{Blackhole: true})
			w.Run(sec(2))
			return w
		},
		"SA goes away during the steer": func(t *testing.T) *sim.World {
			w := pending(t)
			w.Deliver(mobike.EvSADown{Conn: "office", UniqueID: 1})
			w.Run(sec(1))
			return w
		},
		"no path": func(t *testing.T) *sim.World {
			w := office(t, topo{eth: true, wlan: true})
			w.Run(sec(5))
			w.SetLinkUp("eth0", false)
			w.SetLinkUp("wlan0", false)
			w.Run(sec(5))
			return w
		},
		"nat forbidden": func(t *testing.T) *sim.World { return natForbidBlackhole(t, false, sec(5), sec(10)) },
		"move budget":   flappingEth,
	}
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			collect(scenarios[n](t))
		})
	}
	for _, c := range mobike.SteerCauses() {
		if !steers[c] {
			t.Errorf("steer cause %s never occurred", c)
		}
	}
	for _, c := range mobike.FailCauses() {
		if !fails[c] {
			t.Errorf("failure cause %s never occurred", c)
		}
	}
	for _, r := range mobike.AlertReasons() {
		if !alerts[r] {
			t.Errorf("alert reason %s never occurred", r)
		}
	}
}
