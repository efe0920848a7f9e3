package sim_test

import (
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/sim"
)

// TestArmRoamCarriesTheMove: when the pair an SA is on is blackholed, its
// confirmation burst stays silent and the core arms charon's roam
// evaluation so that it runs just after the move is decided; charon then
// moves the SA when the armed evaluation runs, less than RoamDelay after the
// steer, whatever the probe timing. Without bursts (the sim's legacy
// prober) nothing is armed and charon moves RoamDelay after the steer.
func TestArmRoamCarriesTheMove(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pm    sim.ProbeModel
		armed bool
	}{
		{"fast: 50ms interval, 25ms timeout", sim.ProbeModel{Active: 50 * time.Millisecond, Timeout: 25 * time.Millisecond, Burst: 3}, true},
		{"defaults: 200ms interval, 100ms timeout", sim.ProbeModel{Active: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, Burst: 3}, true},
		{"no bursts", sim.ProbeModel{Active: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := sim.New(sim.Options{Seed: 1, Probes: tc.pm})
			w.AddUplink(sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Addrs: []string{ethA + "/24"}, Gateways: []string{"10.1.0.1"}, Metric: 100, Latency: 5 * time.Millisecond})
			w.AddUplink(sim.UplinkSpec{Name: "wlan0", Kind: mobike.KindWLAN, Addrs: []string{wlanA + "/24"}, Gateways: []string{"10.2.0.1"}, Metric: 200, Latency: 5 * time.Millisecond})
			w.Charon.AddConn("office", peer1)
			w.Charon.Initiate("office", true)
			w.Start()
			w.Run(sec(15))
			wantPair(t, w, "office", pair(ethA, peer1))
			w.SetLinkImpair("eth0", sim.Impair{Blackhole: true})
			w.Run(sec(3))
			wantPair(t, w, "office", pair(wlanA, peer1))
			moved, mi := lastTime(t, w, "charon: office#1 moves", -1)
			steered, si := lastTime(t, w, "steer-requested office", mi)
			armed, ai := lastTime(t, w, "act arm-roam", mi)
			if mi < 0 || si < 0 {
				t.Fatalf("no steer and move in the trace:\n%s", tail(w.Trace(), 40))
			}
			if (ai >= 0) != tc.armed {
				t.Fatalf("armed %t, want %t:\n%s", ai >= 0, tc.armed, tail(w.Trace(), 40))
			}
			t.Logf("arm %v, steer %v, move %v", armed, steered, moved)
			if tc.armed {
				if moved-armed != sim.RoamDelay || moved-steered >= sim.RoamDelay || steered < armed {
					t.Fatalf("arm %v, steer %v, move %v: want the move RoamDelay after the arm, less after the steer", armed, steered, moved)
				}
			} else if moved-steered != sim.RoamDelay {
				t.Fatalf("steer %v, move %v: want RoamDelay after the steer", steered, moved)
			}
		})
	}
}
