package mobike

import "time"

// Arming charon's roam evaluation.
//
// charon (kernel-netlink, strongSwan 5.9) looks at its IKE_SAs' paths
// CharonRoamDelay after the first routing event it sees, and merges every
// event inside that delay into the same evaluation. A steer therefore
// reaches the tunnel CharonRoamDelay after mobiked changed the routes —
// unless an evaluation is already pending: then the change is carried out
// when that one runs. So when the pair a group is on has a confirmation
// burst in flight and stays silent, the core plans to arm charon's
// evaluation (ActArmRoam: a routing change that routes nothing) so that it
// runs just after the move would be decided: armAllowance after the burst's
// end (PathStats.BurstEnds), time for the down verdict and the candidates'
// confirmation. A reply of the pair before then cancels the plan; if the
// arm is made and the pair turns out fine, charon finds every path as it
// was and keeps it ("keeping connection path"). Each arm makes charon look
// at every IKE_SA, so arms are at least RoamArmGap apart, host-wide
// (charon's evaluation is host-wide too).

// CharonRoamDelay is charon's debounce of routing events (ROAM_DELAY in
// kernel-netlink, not configurable).
const CharonRoamDelay = 100 * time.Millisecond

// RoamArmGap is the least time between two ActArmRoam.
const RoamArmGap = time.Second

// armAllowance is the time from a burst's end to the steer: the verdict
// (the prober's 5 ms rounds and the loop, ~8 ms measured) and the
// confirmation of the candidates (that candidate's own answer time when a
// candidate ahead in preference does not answer: minAnswerWait, 20 ms, at
// a lab RTT; it was the slowest candidate's, up to 39 ms, before), with a
// margin (a shorter allowance also arms before a burst's first reply is
// read: 83 arms in five loss5 runs of the fast profile with 40 ms). Too short and the steer misses the armed evaluation (then charon
// moves 100 ms after the steer, as without an arm); too long and the move
// waits for the evaluation.
const armAllowance = 3 * minAnswerWait

// ActArmRoam asks the steering adapter to make charon start its roam
// evaluation now, with a routing change that routes nothing: a host route to
// a destination no peer can have, through LinkIdx with source Pair.Local,
// added and deleted at once. Pair is the silent pair that armed it.
type ActArmRoam struct {
	Pair    Pair
	LinkIdx int
}

func (ActArmRoam) isAction() {}

// armPlan is a planned ActArmRoam.
type armPlan struct {
	pair Pair
	at   time.Time
}

// planArm plans, moves or cancels the arm for a probe result of p.
func (c *Controller) planArm(p *pair, ev EvProbeResult) {
	if pl := c.arm; pl != nil && pl.pair == p.p && (ev.OK || !ev.Stats.Confirming) {
		c.arm, c.decided = nil, true // answered, or the verdict is in
		return
	}
	if ev.OK || !ev.Stats.Confirming || ev.Stats.BurstEnds.IsZero() {
		return
	}
	g := c.groupOf[p.p.Remote]
	if g == nil || g.pair != p.p || g.pending != nil {
		return
	}
	at := ev.Stats.BurstEnds.Add(armAllowance - CharonRoamDelay)
	if at.Before(c.now) {
		at = c.now
	}
	if pl := c.arm; pl != nil && pl.pair != p.p && !pl.at.After(at) {
		return // an earlier plan for another pair arms charon for both
	}
	c.arm, c.decided = &armPlan{pair: p.p, at: at}, true
}

// fireArm emits the planned arm when it is due and still useful: the pair
// is still the one its group is on, silent, no steer under way, and the
// last arm is RoamArmGap old.
func (c *Controller) fireArm() {
	pl := c.arm
	if pl == nil || c.now.Before(pl.at) {
		return
	}
	c.arm, c.decided = nil, true
	p := c.pairs[pl.pair]
	g := c.groupOf[pl.pair.Remote]
	if p == nil || g == nil || g.pair != pl.pair || g.pending != nil || p.stats.ConsecLost == 0 {
		return
	}
	if !c.lastArm.IsZero() && c.now.Sub(c.lastArm) < RoamArmGap {
		return
	}
	c.lastArm = c.now
	c.acts = append(c.acts, ActArmRoam{Pair: pl.pair, LinkIdx: p.linkIdx})
}
