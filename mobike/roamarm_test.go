package mobike

import (
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// burstLoss is the n-th loss of a streak on p at s with a burst in flight
// ending at ends (0 = no burst; confirming as the prober would report).
func burstLoss(p Pair, s float64, n int, ends float64, confirming bool) EvProbeResult {
	ev := lost(p, at(s), n)
	ev.Stats.Confirming = confirming
	if ends > 0 {
		ev.Stats.BurstEnds = at(ends)
	}
	ev.Stats.LastReply = at(0.01)
	return ev
}

func armed(acts []Action, p Pair) bool { return strings.Contains(kinds(acts), "arm-roam "+p.String()) }

// TestArmRoamPlan: a silent burst on the pair the SA is on plans the arm
// armAllowance − CharonRoamDelay after the burst's end (the core's next
// deadline), at once when that is past; a reply or the verdict cancels the
// plan; a candidate pair plans nothing; arms are RoamArmGap apart.
func TestArmRoamPlan(t *testing.T) {
	lead := CharonRoamDelay - armAllowance // the arm leads the burst's end by this

	t.Run("planned, then fired by the timer", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		if acts := c.Step(at(1), burstLoss(pEth, 1, 1, 1.3, true)); armed(acts, pEth) {
			t.Fatalf("armed at once: %s", kinds(acts))
		}
		want := at(1.3).Add(-lead)
		if got := c.NextDeadline(); !got.Equal(want) {
			t.Fatalf("next deadline %v, want the planned arm %v", got.Sub(t0), want.Sub(t0))
		}
		if acts := c.Step(want.Add(-time.Millisecond), EvTimer{}); armed(acts, pEth) {
			t.Fatal("armed early")
		}
		acts := c.Step(want, EvTimer{})
		if !armed(acts, pEth) {
			t.Fatalf("not armed when due: %s", kinds(acts))
		}
		for _, a := range acts {
			if a, ok := a.(ActArmRoam); ok && a.LinkIdx != c.pairs[pEth].linkIdx {
				t.Fatalf("arm through link %d, want the pair's %d", a.LinkIdx, c.pairs[pEth].linkIdx)
			}
		}
		if acts := c.Step(want.Add(time.Millisecond), EvTimer{}); armed(acts, pEth) {
			t.Fatal("armed twice")
		}
	})
	t.Run("burst about to end: at once", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		if acts := c.Step(at(1), burstLoss(pEth, 1, 1, 1.03, true)); !armed(acts, pEth) {
			t.Fatalf("not armed: %s", kinds(acts))
		}
	})
	t.Run("a reply cancels the plan", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		c.Step(at(1), burstLoss(pEth, 1, 1, 1.3, true))
		c.Step(at(1.1), good(pEth, at(1.1)))
		if acts := c.Step(at(1.3).Add(-lead), EvTimer{}); armed(acts, pEth) {
			t.Fatalf("armed after the pair answered: %s", kinds(acts))
		}
	})
	t.Run("the verdict cancels the plan", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		c.Step(at(1), burstLoss(pEth, 1, 1, 1.3, true))
		acts := c.Step(at(1.1), burstLoss(pEth, 1.1, 4, 1.3, false)) // down
		if armed(acts, pEth) || !strings.Contains(kinds(acts), "confirm") {
			t.Fatalf("at the verdict: %s, want the candidates' confirmation and no arm", kinds(acts))
		}
		if acts := c.Step(at(1.3).Add(-lead), EvTimer{}); armed(acts, pEth) {
			t.Fatalf("armed after the verdict: %s", kinds(acts))
		}
	})
	t.Run("a candidate pair", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		if acts := c.Step(at(1), burstLoss(pWlan, 1, 1, 1.05, true)); armed(acts, pWlan) {
			t.Fatalf("armed for a candidate: %s", kinds(acts))
		}
	})
	t.Run("no burst", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		if acts := c.Step(at(1), burstLoss(pEth, 1, 1, 0, false)); armed(acts, pEth) || !c.NextDeadline().IsZero() {
			t.Fatalf("armed (%s) or planned (%v) without a burst", kinds(acts), c.NextDeadline())
		}
	})
	t.Run("gap between arms", func(t *testing.T) {
		c := setup(t, policy.Settings{}, true)
		for _, st := range []struct {
			s   float64
			arm bool
		}{{1, true}, {1.5, false}, {1.99, false}, {2, true}} {
			c.Step(at(st.s-0.001), good(pEth, at(st.s-0.001))) // a new streak
			if got := armed(c.Step(at(st.s), burstLoss(pEth, st.s, 1, st.s+0.03, true)), pEth); got != st.arm {
				t.Fatalf("at %v: armed %t, want %t", st.s, got, st.arm)
			}
		}
	})
}

// TestNoArmWhileSteering: during a steer the routes change anyway (that
// change is charon's trigger); the pair a steer targets is not armed.
func TestNoArmWhileSteering(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	c.Step(at(1), lost(pEth, at(1), 3))             // down: confirm wlan
	acts := c.Step(at(1.01), good(pWlan, at(1.01))) // confirmed: steer to wlan
	if _, ok := routed(acts, "office"); !ok {
		t.Fatalf("no steer: %s", kinds(acts))
	}
	if acts := c.Step(at(1.02), burstLoss(pWlan, 1.02, 1, 1.05, true)); armed(acts, pWlan) {
		t.Fatalf("armed during a steer: %s", kinds(acts))
	}
}
