package mobike

import (
	"slices"
	"strconv"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// Confirmation before a move. A standby pair is probed about once a second,
// so its last reply may predate a failure it shares with the current pair
// (the same uplink, the same peer address). Before the core relies on a pair
// it asks its prober for a confirmation burst (ActProbeConfirm) and moves to
// a pair known good within the last freshFor:
//
//   - a forced move off a pair the probes found down confirms every eligible
//     candidate of the group and takes, in its preference order (forcedOrder),
//     the first one that answered; a candidate ahead of it that has not
//     answered within its own expected reply time (answerAt) is passed over, so a
//     dead sibling of the failed uplink costs ~20 ms, not a whole burst;
//   - a non-forced move (SLA breach, better path) away from a suspect current
//     pair (losses, a burst in flight) onto a pair that shares its uplink or
//     peer address waits for that pair's burst.
//
// A forced move for a local event (link down, address gone: the pair is
// gone) or for policy (not allowed) is not delayed: there is nothing to
// disambiguate, and charon roams on such events by itself within ~100 ms.
// Nor are pairs probed with IKE confirmed (confirmable): a forced move among
// them takes the least suspect candidate at once, as before.

const (
	// freshFor is how recent a reply must be to need no burst.
	freshFor = 100 * time.Millisecond
	// maxConfirm bounds the candidates confirmed for one forced move.
	maxConfirm = 8
	// answerSlack is the prober's and the loop's scheduling slack on top
	// of a candidate's RTT (5 ms rounds, socket reads at growing gaps).
	answerSlack   = 15 * time.Millisecond
	minAnswerWait = 20 * time.Millisecond
	// maxConfirmWait bounds the wait for a burst's verdict.
	maxConfirmWait = time.Second
)

// confirmation is a group's pending confirmation.
type confirmation struct {
	from   Pair // the group's pair when it started
	forced bool
	target Pair // non-forced: the pair the move waits for
	// at: when the bursts were requested; ref: the current pair's last
	// reply then. A reply after ref and at most freshFor before at is
	// fresh evidence.
	at, ref time.Time
	// answerAt is when a candidate asked to confirm that has not answered
	// is passed over: its own expected reply time (a slow sibling must not
	// hold up the walk past a dead candidate with a fast RTT); answerBy is
	// the latest of them.
	answerBy time.Time
	answerAt map[Pair]time.Time
	deadline time.Time // the bursts' verdicts are in by then
	pairs    []Pair    // the pairs asked to confirm
	used     bool      // touched by the current evaluation
}

// answerByOf is when candidate k, silent so far, is passed over: a
// candidate not asked to confirm (probed with IKE, beyond maxConfirm, new
// since) brings no evidence soon, so at once.
func (cf *confirmation) answerByOf(k Pair) time.Time {
	if t, ok := cf.answerAt[k]; ok {
		return t
	}
	return cf.at
}

// fresh reports whether pair q answered after the confirmation's reference
// and recently enough.
func (cf *confirmation) fresh(q *pair) bool {
	lr := q.stats.LastReply
	return !lr.IsZero() && lr.After(cf.ref) && !lr.Before(cf.at.Add(-freshFor))
}

// answerWait is how long a healthy pair with these statistics takes to
// answer a burst's first probe.
func answerWait(st PathStats) time.Duration {
	w := 3*st.SRTT + answerSlack
	if st.SRTT == 0 {
		w = st.RTO
	}
	if st.RTO > 0 {
		w = min(w, st.RTO)
	}
	return min(max(w, minAnswerWait), maxConfirmWait)
}

// verdictWait is how long a burst on a pair with these statistics takes to
// resolve: its last probe leaves two gaps (a third of the timeout each)
// after the first and times out one timeout later.
func verdictWait(st PathStats) time.Duration {
	rto := st.RTO
	if rto <= 0 {
		rto = maxConfirmWait
	}
	return min(rto+2*rto/3+answerSlack, maxConfirmWait)
}

// startConfirm requests bursts on the pairs and records the confirmation.
func (c *Controller) startConfirm(g *group, from Pair, forced bool, target Pair, pairs []Pair) *confirmation {
	cf := &confirmation{from: from, forced: forced, target: target, at: c.now, pairs: pairs,
		answerAt: make(map[Pair]time.Time, len(pairs))}
	if cp := c.pairs[from]; cp != nil {
		cf.ref = cp.stats.LastReply
	}
	var answer, verdict time.Duration
	for _, k := range pairs {
		q := c.pairs[k]
		w := answerWait(q.stats)
		cf.answerAt[k] = c.now.Add(w)
		answer = max(answer, w)
		verdict = max(verdict, verdictWait(q.stats))
		c.acts = append(c.acts, ActProbeConfirm{Pair: k})
	}
	cf.answerBy, cf.deadline = c.now.Add(answer), c.now.Add(max(answer, verdict))
	if len(pairs) > 0 {
		c.observe(ConfirmRequested{Group: g.name, From: from, Pairs: slices.Clone(pairs), Forced: forced,
			Answer: answer, Verdict: max(answer, verdict)})
	}
	g.confirm = cf
	return cf
}

// confirmable reports whether a burst may be asked of q's prober: not with
// IKE probes, whose IKE_SA_INITs a gateway counts as half-open SAs (charon
// blocks a peer with more than block_threshold, 5 by default: bursts on
// several candidates took the good pairs down in the lab).
func confirmable(q *pair) bool {
	return q != nil && q.started.Pair.Remote.IsValid() && q.started.Method != ProbeIKE
}

// probeVerdict reports whether p is down on the probes' evidence (not gone,
// not a local event): the only failure a confirmation can disambiguate.
func probeVerdict(p *pair) bool {
	return p != nil && p.state == PathDown && (p.reason == ReasonConsecLoss || p.reason == ReasonWindowLoss)
}

// changes counts the endpoints of p that differ from cur's.
func changes(p, cur Pair) int {
	n := 0
	if p.Local != cur.Local {
		n++
	}
	if p.Remote != cur.Remote {
		n++
	}
	return n
}

// sameClass reports whether two ranked candidates are equal on every ranking
// key before RTT (priority, deprecation, SLA, cost, metering, family).
func sameClass(a, b *policy.Ranked) bool {
	return a.Uplink.Priority == b.Uplink.Priority && a.Deprecated == b.Deprecated && a.SLAMet == b.SLAMet &&
		a.Uplink.Cost == b.Uplink.Cost && a.Uplink.Metered == b.Uplink.Metered && a.Remote.Is6() == b.Remote.Is6()
}

// forcedOrder orders a forced move's candidate indices (in ranking order):
// within each run of candidates equal on the ranking keys before RTT, the
// pairs that keep one end of the failed pair come first (moving only the
// local address, or only the remote one, is what the evidence of a single
// failure supports, and charon moves an SA's local address without probing
// the peer's other addresses), then the ranking.
func forcedOrder(ranked []policy.Ranked, cands []int, cur Pair) []int {
	out := slices.Clone(cands)
	class := make(map[int]int, len(out))
	cl := 0
	for j, i := range out {
		if j > 0 && !sameClass(&ranked[out[j-1]], &ranked[i]) {
			cl++
		}
		class[i] = cl
	}
	slices.SortStableFunc(out, func(a, b int) int {
		if d := class[a] - class[b]; d != 0 {
			return d
		}
		pa := Pair{Local: ranked[a].Local, Remote: ranked[a].Remote}
		pb := Pair{Local: ranked[b].Local, Remote: ranked[b].Remote}
		if d := changes(pa, cur) - changes(pb, cur); d != 0 {
			return d
		}
		return a - b
	})
	return out
}

// forcedWalk walks a member's candidates (forcedOrder) with the
// confirmation's evidence: the first fresh candidate is the pick; one
// without an answer stops the walk until its answer time (until, non-zero),
// after which it is passed over. pick is -1 when no candidate answered.
func (c *Controller) forcedWalk(ranked []policy.Ranked, order []int, cf *confirmation) (pick int, until time.Time) {
	for _, i := range order {
		k := Pair{Local: ranked[i].Local, Remote: ranked[i].Remote}
		if q := c.pairs[k]; q != nil && cf.fresh(q) {
			return i, time.Time{}
		}
		if by := cf.answerByOf(k); c.now.Before(by) {
			return -1, by
		}
	}
	return -1, time.Time{}
}

// leastSuspect is the member's candidate with the least suspicion (the
// first of those in forcedOrder) and its suspicion.
func (c *Controller) leastSuspect(ranked []policy.Ranked, order []int, cur Pair) (pick, s int) {
	best, at := 3, order[0]
	for _, i := range order {
		if s := c.suspicion(Pair{Local: ranked[i].Local, Remote: ranked[i].Remote}, cur); s < best {
			best, at = s, i
		}
	}
	return at, best
}

// forcedMove leaves the group's current pair cur (cause, detail): at once
// when the failure is a local event or policy, else after confirming the
// candidates (see the top of this file). With a confirmation, the first
// member (in group order) whose walk found a fresh candidate leads, once no
// member waits for an answer any more; when none answered it waits for the
// bursts' verdicts until the deadline. Without a confirmation, or when
// nothing answered, the member with the least suspect candidate leads.
func (c *Controller) forcedMove(g *group, steered []*conn, rrs []*rankResult, cur Pair, cause SteerCause, detail string) {
	var cf *confirmation
	if cp := c.pairs[cur]; cause == SteerPathDown && probeVerdict(cp) {
		cf = g.confirm
		if cf == nil || !cf.forced || cf.from != cur {
			cf = nil
			if pairs := c.confirmCandidates(steered, rrs, cur); len(pairs) > 0 {
				cf = c.startConfirm(g, cur, true, Pair{}, pairs)
			}
		}
		if cf != nil {
			cf.used = true
		}
	}
	orders := make([][]int, len(steered))
	for i := range steered {
		orders[i] = forcedOrder(rrs[i].ranked, c.filtered(steered, rrs, i, cur), cur)
	}
	lead, pick := -1, -1
	if cf != nil {
		var wait time.Time // the earliest answer time a member's walk waits for
		for i, order := range orders {
			k, until := c.forcedWalk(rrs[i].ranked, order, cf)
			if !until.IsZero() && (wait.IsZero() || until.Before(wait)) {
				wait = until
			}
			if k >= 0 && lead < 0 {
				lead, pick = i, k
			}
		}
		next := time.Time{}
		switch {
		case !wait.IsZero():
			next = wait
		case lead < 0 && c.now.Before(cf.deadline):
			next = cf.deadline
		}
		if !next.IsZero() {
			g.decision = "confirming " + strconv.Itoa(len(cf.pairs)) + " candidate pairs before leaving " + cur.String() + " (" + detail + ")"
			c.minDeadline(g, next)
			return
		}
	}
	if lead < 0 {
		best := 3
		for i, order := range orders {
			if len(order) == 0 {
				continue
			}
			if k, s := c.leastSuspect(rrs[i].ranked, order, cur); s < best {
				best, lead, pick = s, i, k
			}
		}
	}
	g.confirm = nil
	g.lead = steered[lead].name
	c.steer(g, cur, &rrs[lead].ranked[pick], cause, "current pair "+detail)
}

// confirmCandidates are the pairs a forced move off cur confirms: every
// eligible candidate of the steered members without fresh evidence, in the
// lead's preference order, at most maxConfirm.
func (c *Controller) confirmCandidates(steered []*conn, rrs []*rankResult, cur Pair) []Pair {
	cf := &confirmation{at: c.now}
	if cp := c.pairs[cur]; cp != nil {
		cf.ref = cp.stats.LastReply
	}
	var out []Pair
	for i := range steered {
		for _, k := range forcedOrder(rrs[i].ranked, c.filtered(steered, rrs, i, cur), cur) {
			p := Pair{Local: rrs[i].ranked[k].Local, Remote: rrs[i].ranked[k].Remote}
			if q := c.pairs[p]; confirmable(q) && !cf.fresh(q) && !slices.Contains(out, p) && len(out) < maxConfirm {
				out = append(out, p)
			}
		}
	}
	return out
}

// awaitTarget reports whether a non-forced move from cur to w must wait
// for w's confirmation burst (recording it in the group's decision): when
// cur is suspect (losses, a burst in flight) and w shares its uplink or its
// peer address, w must have answered after cur's last reply, recently.
func (c *Controller) awaitTarget(g *group, cur, w Pair) bool {
	cp, wp := c.pairs[cur], c.pairs[w]
	if cp == nil || !confirmable(wp) || (cp.stats.ConsecLost == 0 && !cp.stats.Confirming) ||
		(wp.linkIdx != cp.linkIdx && w.Remote != cur.Remote) {
		return false
	}
	cf := g.confirm
	if cf == nil || cf.forced || cf.from != cur || cf.target != w {
		probe := &confirmation{at: c.now, ref: cp.stats.LastReply}
		if probe.fresh(wp) {
			return false
		}
		cf = c.startConfirm(g, cur, false, w, []Pair{w})
	}
	cf.used = true
	if cf.fresh(wp) {
		g.confirm = nil
		return false
	}
	if c.now.Before(cf.deadline) {
		g.decision = "confirming " + w.String() + " before leaving suspect " + cur.String()
		c.minDeadline(g, cf.deadline)
		return true
	}
	g.decision = "stay: " + w.String() + " did not answer its confirmation burst"
	return true
}

// filtered returns the eligible candidate indices of member i's ranking that
// choose considers: narrowed to its operator override when it has one, to
// the current pair's address family when possible, and, in a group of
// several classes, to the pairs that satisfy the most steered members.
func (c *Controller) filtered(steered []*conn, rrs []*rankResult, lead int, cur Pair) []int {
	lr := rrs[lead]
	pref := steered[lead].prefer
	var cands []int
	for i := range lr.ranked {
		if r := &lr.ranked[i]; r.Eligible && (pref == "" || r.Uplink.Name == pref) {
			cands = append(cands, i)
		}
	}
	if len(cands) == 0 {
		for i := range lr.ranked {
			if lr.ranked[i].Eligible {
				cands = append(cands, i)
			}
		}
	}
	if cur.Remote.IsValid() {
		same := slices.DeleteFunc(slices.Clone(cands), func(i int) bool { return lr.ranked[i].Remote.Is4() != cur.Remote.Is4() })
		if len(same) > 0 {
			cands = same
		}
	}
	if len(steered) > 1 && len(cands) > 0 {
		// Members with identical inputs share one ranking: count each
		// distinct ranking once, weighted (1 000 connections to one gateway
		// are one or two rankings).
		weight := map[*rankResult]int{}
		var distinct []*rankResult
		for i, rr := range rrs {
			if weight[rr] == 0 {
				distinct = append(distinct, rr)
			}
			weight[rr] += steered[i].class.nSteer // rrs are per class
		}
		count := make([]int, len(cands))
		most := 0
		for j, i := range cands {
			p := Pair{Local: lr.ranked[i].Local, Remote: lr.ranked[i].Remote}
			for _, rr := range distinct {
				if rr.eligible(p) {
					count[j] += weight[rr]
				}
			}
			most = max(most, count[j])
		}
		var best []int
		for j, i := range cands {
			if count[j] == most {
				best = append(best, i)
			}
		}
		cands = best
	}
	return cands
}

// pairList renders pairs for a trace line.
func pairList(ps []Pair) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}
