package mobike

import "time"

// Arming charon's roam evaluation.
//
// charon (kernel-netlink, strongSwan 5.9) looks at its IKE_SAs' paths
// CharonRoamDelay after the first routing event it sees, and merges every
// event inside that delay into the same evaluation. A steer therefore
// reaches the tunnel at least CharonRoamDelay after mobiked changed the
// routes — unless an evaluation is already pending: then the change is
// carried out when that one runs. At the first loss of the pair a group is
// on, when the pair's timeout is short enough for a verdict (and a move)
// to come within that delay, the core asks the steering adapter to arm
// charon's evaluation with a change that routes nothing (ActArmRoam). If
// the pair is down, the move decided meanwhile is carried out up to
// CharonRoamDelay sooner; if it is not, charon finds every path as it was
// and keeps it ("keeping connection path"). Each arm makes charon look at
// every IKE_SA, so arms are at least RoamArmGap apart, host-wide (charon's
// evaluation is host-wide too).

// CharonRoamDelay is charon's debounce of routing events (ROAM_DELAY in
// kernel-netlink, not configurable).
const CharonRoamDelay = 100 * time.Millisecond

// RoamArmGap is the least time between two ActArmRoam.
const RoamArmGap = time.Second

// roamArmRTO is the largest timeout of the pair (after the first loss, as
// the prober reports it: already doubled once) at which an arm is worth
// it: the verdict then needs about one such timeout plus the burst's
// spacing (a third of the base timeout per probe), and the confirmation of
// the candidates one base timeout, all within CharonRoamDelay.
const roamArmRTO = CharonRoamDelay / 2

// ActArmRoam asks the steering adapter to make charon start its roam
// evaluation now, with a routing change that routes nothing: a host route to
// a destination no peer can have, through LinkIdx with source Local, added
// and deleted at once. Pair is the pair whose loss armed it.
type ActArmRoam struct {
	Pair    Pair
	LinkIdx int
}

func (ActArmRoam) isAction() {}

// maybeArmRoam arms charon's roam evaluation at the first loss of a streak
// on the pair a group is on (see above).
func (c *Controller) maybeArmRoam(p *pair, ev EvProbeResult) {
	if ev.OK || ev.Stats.ConsecLost != 1 || ev.Stats.RTO <= 0 || ev.Stats.RTO > roamArmRTO {
		return
	}
	g := c.groupOf[p.p.Remote]
	if g == nil || g.pair != p.p || g.pending != nil {
		return
	}
	if !c.lastArm.IsZero() && c.now.Sub(c.lastArm) < RoamArmGap {
		return
	}
	c.lastArm = c.now
	c.acts = append(c.acts, ActArmRoam{Pair: p.p, LinkIdx: p.linkIdx})
}
