package mobike

import (
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// lossRTO is a probe loss with the pair's reported timeout.
func lossRTO(p Pair, s float64, n int, rto time.Duration) EvProbeResult {
	ev := lost(p, at(s), n)
	ev.Stats.RTO = rto
	ev.Stats.Confirming = n <= 3
	ev.Stats.LastReply = at(0.01)
	return ev
}

// TestArmRoam: the first loss of the pair the SA is on arms charon's roam
// evaluation when the pair's timeout lets a verdict come within charon's
// delay; not for a later loss of the streak, a pair no group is on, a slow
// pair, or within RoamArmGap of the last arm (host-wide).
func TestArmRoam(t *testing.T) {
	type step struct {
		s    float64
		pair Pair
		n    int
		rto  time.Duration
		arm  bool
	}
	fast, slow := 50*time.Millisecond, 200*time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"first loss of the active pair", []step{{1, pEth, 1, fast, true}, {1.03, pEth, 2, fast, false}, {1.05, pEth, 3, fast, false}}},
		{"timeout beyond half the roam delay", []step{{1, pEth, 1, slow, false}, {1, pEth, 1, roamArmRTO + time.Millisecond, false}}},
		{"exactly half the roam delay", []step{{1, pEth, 1, roamArmRTO, true}}},
		{"a candidate pair", []step{{1, pWlan, 1, fast, false}}},
		{"no timeout reported", []step{{1, pEth, 1, 0, false}}},
		{"gap between arms", []step{{1, pEth, 1, fast, true}, {1.5, pEth, 1, fast, false}, {1.999, pEth, 1, fast, false}, {2, pEth, 1, fast, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t, policy.Settings{}, true)
			for _, st := range tc.steps {
				if st.n == 1 && st.s > 1 { // a new streak: the pair answered in between
					c.Step(at(st.s-0.001), good(st.pair, at(st.s-0.001)))
				}
				acts := c.Step(at(st.s), lossRTO(st.pair, st.s, st.n, st.rto))
				got := strings.Contains(kinds(acts), "arm-roam "+st.pair.String())
				if got != st.arm {
					t.Fatalf("at %v loss %d of %s (RTO %v): armed %t, want %t (%s)", st.s, st.n, st.pair, st.rto, got, st.arm, kinds(acts))
				}
				for _, a := range acts {
					if a, ok := a.(ActArmRoam); ok && a.LinkIdx != c.pairs[st.pair].linkIdx {
						t.Fatalf("arm through link %d, want the pair's %d", a.LinkIdx, c.pairs[st.pair].linkIdx)
					}
				}
			}
		})
	}
}

// TestNoArmWhileSteering: during a steer the routes change anyway (that
// change is charon's trigger); the pair being left is not armed again.
func TestNoArmWhileSteering(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	c.Step(at(1), lost(pEth, at(1), 3))             // down: confirm wlan
	acts := c.Step(at(1.01), good(pWlan, at(1.01))) // confirmed: steer to wlan
	if _, ok := routed(acts, "office"); !ok {
		t.Fatalf("no steer: %s", kinds(acts))
	}
	if acts := c.Step(at(1.02), lossRTO(pWlan, 1.02, 1, 50*time.Millisecond)); strings.Contains(kinds(acts), "arm-roam") {
		t.Fatalf("armed during a steer: %s", kinds(acts))
	}
}
