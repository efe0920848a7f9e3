package mobike

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// steerHint is the operator message of an unconfirmed steer.
const steerHint = "charon did not move the SA; are prefer_best_path, fwmark and process_rules set? see deploy/strongswan.d/mobiked.conf"

// decide evaluates every steering group whose inputs changed or whose
// deadline has come, in key order. A group marked dirty while it is
// evaluated (a steer failed or was abandoned) is evaluated again in the
// next Step.
func (c *Controller) decide() {
	due := !c.deadline.IsZero() && !c.now.Before(c.deadline)
	if !c.anyDirty && !due {
		return
	}
	c.anyDirty, c.decided = false, true
	clear(c.rankCache)
	list := c.dirtyGroups
	c.dirtyGroups = nil
	if all := c.allDirty; all || due {
		c.allDirty = false
		for _, g := range c.groups {
			if all || g.dirty || (!g.deadline.IsZero() && !c.now.Before(g.deadline)) {
				c.evaluate(g)
			}
		}
		return
	}
	slices.SortFunc(list, func(a, b *group) int { return a.idx - b.idx })
	for _, g := range list {
		if g.dirty {
			c.evaluate(g)
		}
	}
}

// steerable reports whether an SA is one the core steers: the original
// initiator (RFC 4621 §5.1.5: the initiator decides) in a state where it is
// on a path. IKEUnknown counts as established (an adapter that does not
// report states).
func steerable(sa SA) bool {
	if !sa.Initiator {
		return false
	}
	switch sa.State {
	case IKEEstablished, IKERekeying, IKEUnknown:
		return true
	}
	return false
}

// firstInitiator returns the steerable SA of cn with the lowest ID (its pair
// is the connection's current pair), or nil.
func (c *Controller) firstInitiator(cn *conn) *saState {
	for _, id := range cn.sas {
		if s := c.sas[id]; steerable(s.sa) {
			return s
		}
	}
	return nil
}

// onPairs returns the distinct pairs the steerable SAs of the group's
// members are on.
func (c *Controller) onPairs(g *group) []Pair {
	var out []Pair
	for _, k := range g.classes {
		for p := range k.on {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, comparePair)
	return out
}

// allOn reports whether every steerable SA of the members that can be on p
// is on p.
func (c *Controller) allOn(g *group, p Pair) bool {
	for _, k := range g.classes {
		if len(k.on) == 0 || (len(k.on) == 1 && k.on[p] > 0) || !k.follows(p) {
			continue
		}
		return false
	}
	return true
}

// progress reports whether more steerable SAs of the group are on the
// steer's target than at its last deadline, and records the count.
func (c *Controller) progress(g *group, ps *pendingSteer) bool {
	n := 0
	for _, k := range g.classes {
		n += k.on[ps.to]
	}
	more := n > ps.onTarget
	ps.onTarget = n
	return more
}

// diverted returns a pair a steerable SA of the group moved to that is
// neither the steer's target nor one the SAs were on at the steer (zero when
// none), and whether its remote address was unknown when the steer was made.
func (c *Controller) diverted(g *group, ps *pendingSteer) (Pair, bool) {
	some := false
	for _, k := range g.classes {
		for p := range k.on {
			some = some || (p != ps.to && !slices.Contains(ps.from, p))
		}
	}
	if !some {
		return Pair{}, false
	}
	// Which one: the first by member and SA (deterministic).
	for _, m := range g.members {
		for _, id := range m.sas {
			if s := c.sas[id]; steerable(s.sa) && s.pair != ps.to && !slices.Contains(ps.from, s.pair) {
				_, known := slices.BinarySearchFunc(ps.peers, s.pair.Remote, netip.Addr.Compare)
				return s.pair, !known
			}
		}
	}
	return Pair{}, false
}

func (c *Controller) evaluate(g *group) {
	now := c.now
	g.dirty = false
	g.deadline = time.Time{}
	expired := false
	for _, k := range g.classes { // a member with an override is a class of its own
		cn := k.members[0]
		if cn.prefer == "" {
			continue
		}
		if !now.Before(cn.preferUntil) {
			cn.prefer, cn.preferUntil = "", time.Time{}
			c.observe(PreferChanged{Conn: cn.name})
			expired = true
		} else {
			c.minDeadline(g, cn.preferUntil)
		}
	}
	if expired {
		c.buildClasses(g)
	}
	steered := c.steered(g)
	prev := g.pair
	defer func() {
		if cf := g.confirm; cf != nil {
			if !cf.used {
				g.confirm = nil // the situation it was for is over
			} else {
				cf.used = false
			}
		}
		if g.pair != prev {
			c.routingDirt = true
			g.dgOK = false
		}
		c.noteConflicts(g, steered)
	}()
	if len(steered) == 0 {
		if g.pending != nil {
			c.abandon(g, FailSAGone, "no steerable SA left")
		}
		g.pair, g.lead = Pair{}, ""
		g.decision = "no SA"
		for _, m := range g.members {
			if len(m.sas) > 0 {
				g.decision = "monitor only: no established SA of ours (responder side or not up)"
			}
		}
		c.clearAlert(g, AlertNoPath, g.name)
		c.clearAlert(g, AlertNATForbidden, g.name)
		return
	}
	cur := c.firstInitiator(steered[0]).pair

	if ps := g.pending; ps != nil {
		target := c.pairs[ps.to]
		diverted, unknown := c.diverted(g, ps)
		switch {
		case c.allOn(g, ps.to):
			c.observe(SteerConfirmed{Group: g.name, Pair: ps.to, After: now.Sub(ps.at)})
			g.pending, g.failures = nil, 0
			c.probeDirty[ps.to] = true // no longer a target
			c.clearAlert(g, AlertSteerUnconfirmed, g.name)
			c.clearAlert(g, AlertSteerApply, g.name)
		case diverted.Local.IsValid() && unknown:
			// charon went to a peer address we did not know when we
			// steered (lab-notes "Trap"); now it is known and will be
			// prohibited: steer again at once.
			c.abandon(g, FailUnknownPeer, "charon moved to "+diverted.String()+", a peer address unknown at the steer")
		case diverted.Local.IsValid():
			c.fail(g, FailWrongPath, "charon moved to "+diverted.String()+" instead")
		case !now.Before(ps.deadline) && c.progress(g, ps):
			// charon is still moving SAs (a large group moves over
			// seconds): wait another timeout.
			ps.deadline = now.Add(c.pol.SteerTimeout)
			g.pair = ps.to
			g.decision = fmt.Sprintf("waiting for charon to move to %s (%d SAs there)", ps.to, ps.onTarget)
			c.minDeadline(g, ps.deadline)
			return
		case !now.Before(ps.deadline):
			c.fail(g, FailUnconfirmed, "no ike-update within "+c.pol.SteerTimeout.String())
		case target == nil || !target.usable():
			c.abandon(g, FailTargetUnusable, "target no longer usable")
		default:
			g.pair = ps.to
			g.decision = "waiting for charon to move to " + ps.to.String()
			c.minDeadline(g, ps.deadline)
			return
		}
	}
	g.pair = cur

	// Every steered class ranks its candidates once (its members share
	// the ranking); the lead is the first member (by priority) with an
	// eligible pair.
	rrs := make([]*rankResult, len(steered))
	lead := -1
	for i, cn := range steered {
		rrs[i] = c.rank(cn, cur)
		if lead < 0 && rrs[i].winner >= 0 {
			lead = i
		}
	}
	c.noteNATExcluded(g, steered, rrs)
	// Until some member has an eligible pair, the group stays where its
	// first member is.
	g.lead = steered[0].name
	if lead >= 0 {
		g.lead = steered[lead].name
	}

	if cause, detail := c.currentProblem(steered, cur); cause != SteerNone {
		if lead < 0 {
			reason, msg := AlertNoPath, "current pair "+cur.String()+" "+detail+" and no other pair is usable"
			if len(rrs[0].natExcluded) > 0 {
				reason, msg = AlertNATForbidden, "only NATed pairs are usable and the connection forbids NAT; staying on "+cur.String()
			}
			g.decision = "stay: " + msg
			if !g.alerts[alertKey{reason, g.name}] {
				c.observe(NoPath{Group: g.name, Reason: reason})
			}
			c.alert(g, SevCritical, reason, g.name, msg)
			return
		}
		c.clearAlert(g, AlertNoPath, g.name)
		c.clearAlert(g, AlertNATForbidden, g.name)
		if now.Before(g.backoffUntil) {
			g.decision = "backing off after a failed steer"
			c.minDeadline(g, g.backoffUntil)
			return
		}
		// A forced move restores connectivity first: the lead is the first
		// member with the best confirmed (or least suspect) eligible pair
		// (confirm.go); a policy conflict this causes is undone by a
		// better-path move after the hold-down.
		c.forcedMove(g, steered, rrs, cur, cause, detail)
		return
	}
	c.clearAlert(g, AlertNoPath, g.name)
	c.clearAlert(g, AlertNATForbidden, g.name)
	if lead < 0 {
		g.hold = holdKey{}
		g.decision = "stay: no other pair is eligible yet"
		return
	}
	leader := steered[lead]
	w := c.choose(steered, rrs, lead, cur)
	wk := Pair{Local: w.Local, Remote: w.Remote}
	if wk == cur {
		g.hold = holdKey{}
		g.decision = "stay: current pair is the best"
		c.regroup(g, cur)
		return
	}
	preferred := leader.prefer != "" && w.Uplink.Name == leader.prefer
	if cp := c.pairs[cur]; !preferred && !cp.state.Usable() {
		// The current pair has no verdict yet (just started, e.g. after a
		// restart of mobiked): wait for it rather than compare.
		g.hold = holdKey{}
		g.decision = "stay: current pair not tested yet"
		return
	}
	if now.Before(g.backoffUntil) {
		g.decision = "backing off after a failed steer"
		c.minDeadline(g, g.backoffUntil)
		return
	}
	if !preferred {
		wp := c.pairs[wk]
		if wp.state != PathOperational {
			g.decision = "stay: better pair " + wk.String() + " is not stably operational"
			c.regroup(g, cur)
			return
		}
		until := wp.stable.Add(leader.pol.Hold())
		if now.Before(until) {
			if g.hold != (holdKey{wk, until}) {
				g.hold = holdKey{wk, until}
				c.observe(HoldDownStarted{Group: g.name, Pair: wk, Until: until})
			}
			g.decision = "hold-down: " + wk.String() + " must stay operational until " + until.UTC().Format(time.RFC3339)
			c.minDeadline(g, until)
			c.regroup(g, cur)
			return
		}
	}
	// Move budget (anti-flap).
	win := leader.pol.MoveWindow
	g.moves = slices.DeleteFunc(g.moves, func(t time.Time) bool { return !now.Before(t.Add(win)) })
	if len(g.moves) >= leader.pol.MoveBudget {
		until := g.moves[0].Add(win)
		if !g.budgetNoted.Equal(until) {
			g.budgetNoted = until
			c.observe(MoveBudgetExhausted{Group: g.name, Want: wk, Until: until})
			c.alert(g, SevWarning, AlertMoveBudget, g.name, fmt.Sprintf("%d moves in %s: staying on %s instead of moving to %s", len(g.moves), win, cur, wk))
		}
		g.decision = "stay: move budget exhausted until " + until.UTC().Format(time.RFC3339)
		c.minDeadline(g, until)
		c.regroup(g, cur)
		return
	}
	c.clearAlert(g, AlertMoveBudget, g.name)
	if c.awaitTarget(g, cur, wk) {
		c.regroup(g, cur)
		return
	}
	cause, detail := SteerBetterPath, strings.TrimPrefix(w.Reason, "best: ")
	switch {
	case preferred:
		cause, detail = SteerManual, "operator prefers uplink "+leader.prefer+" for "+leader.name
	case w.SLAMet && !c.slaMet(rrs[lead], cur):
		cause = SteerSLABreach
		detail = "current pair misses the SLA of " + leader.name + "; " + detail
	}
	c.steer(g, cur, w, cause, detail)
}

// slaMet reports whether pair p meets the SLA in a ranking (false when p is
// not ranked).
func (c *Controller) slaMet(rr *rankResult, p Pair) bool {
	for i := range rr.ranked {
		if r := &rr.ranked[i]; r.Local == p.Local && r.Remote == p.Remote {
			return r.SLAMet
		}
	}
	return false
}

// regroup steers the SAs of members that are not on the group's current
// pair onto it (the routing state moves them anyway; the steer tracks the
// confirmation). Only onto a usable pair, not during a backoff.
func (c *Controller) regroup(g *group, cur Pair) {
	if c.allOn(g, cur) || c.now.Before(g.backoffUntil) {
		return
	}
	p := c.pairs[cur]
	if p == nil || !p.usable() {
		return
	}
	on := c.onPairs(g)
	g.pending = &pendingSteer{from: on, to: cur, at: c.now, deadline: c.now.Add(c.pol.SteerTimeout), cause: SteerRegroup,
		peers: slices.Clone(g.peers)}
	c.progress(g, g.pending) // the SAs already there are no progress
	c.probeDirty[cur] = true // a target is probed as active
	c.observe(SteerRequested{Group: g.name, From: cur, To: cur, Cause: SteerRegroup,
		Detail: fmt.Sprintf("SAs of the group are on %d pairs", len(on))})
	g.decision = "regrouping every SA onto " + cur.String()
	c.minDeadline(g, g.pending.deadline)
}

// noteNATExcluded records, for the steered members of each class, the pairs
// excluded only because of a NAT (rrs are the rankings of steered's
// classes).
func (c *Controller) noteNATExcluded(g *group, steered []*conn, rrs []*rankResult) {
	for i, rep := range steered {
		k := rep.class
		if len(rrs[i].natExcluded) == 0 && !k.natNoted {
			continue
		}
		k.natNoted = len(rrs[i].natExcluded) > 0
		for _, m := range k.members {
			if m.nSteer > 0 {
				c.noteNATExcludedFor(m, rrs[i])
			}
		}
	}
}

func (c *Controller) noteNATExcludedFor(cn *conn, rr *rankResult) {
	if len(rr.natExcluded) == 0 && len(cn.natExcluded) == 0 {
		return
	}
	for k := range cn.natExcluded {
		if !slices.Contains(rr.natExcluded, k) {
			delete(cn.natExcluded, k)
		}
	}
	for _, k := range rr.natExcluded {
		if !cn.natExcluded[k] {
			cn.natExcluded[k] = true
			c.observe(NATExcluded{Conn: cn.name, Pair: k})
		}
	}
}

// currentProblem says why the group must leave its current pair at once
// (SteerNone: it may stay). An untested current pair is fine: the SA is there
// and charon keeps it alive (adopting it is what keeps a restart from
// moving). A pair that some steered member may use is not a problem: when it
// breaks the policy of another member, that is a conflict (noteConflicts),
// resolved by the ranking, not by a forced move.
func (c *Controller) currentProblem(steered []*conn, cur Pair) (SteerCause, string) {
	p, ok := c.pairs[cur]
	switch {
	case !ok:
		if w, ok := c.localWhy[cur.Local]; ok && w != ReasonNone {
			return SteerPathDown, "is gone (" + w.String() + ")"
		}
		if _, ok := c.localWhy[cur.Local]; !ok {
			return SteerPathDown, "is gone (addr-gone)"
		}
		return SteerPathDown, "is not a candidate"
	case p.state == PathDown:
		return SteerPathDown, "is down (" + p.reason.String() + ")"
	}
	for _, cn := range steered {
		if cn.pol.Allows(p.uplink) && !(p.nat() && cn.pol.NAT == policy.NATForbid) {
			return SteerNone, ""
		}
	}
	if !steered[0].pol.Allows(p.uplink) {
		return SteerNotAllowed, "is on uplink " + p.uplink.Name + ", not allowed"
	}
	return SteerNotAllowed, "has a NAT and the connection forbids NAT"
}

// rankResult is a ranking and what the decision needs from it.
type rankResult struct {
	ranked      []policy.Ranked
	winner      int    // index of the best eligible pair, -1 for none
	natExcluded []Pair // usable, allowed pairs excluded only for NAT
}

// rank returns the ranking of the connection's candidates, shared within a
// Step between the members of its class (same policy, peers and override)
// with the same current pair.
func (c *Controller) rank(cn *conn, cur Pair) *rankResult {
	key := rankKey{cls: cn.class, cur: cur}
	if cn.class == nil {
		key.cn = cn
	}
	return c.rankKeyed(cn, cur, key)
}

// rankOwn is rank for a listed connection with its own name in the reasons.
func (c *Controller) rankOwn(cn *conn, cur Pair) *rankResult {
	if cn.explicit {
		return c.rankKeyed(cn, cur, rankKey{cn: cn, cur: cur})
	}
	return c.rank(cn, cur)
}

func (c *Controller) rankKeyed(cn *conn, cur Pair, key rankKey) *rankResult {
	if r, ok := c.rankCache[key]; ok {
		return r
	}
	n := 0
	for _, r := range cn.peers {
		n += len(c.byRemote[r])
	}
	// The candidates buffer is reused: a Ranker returns copies (Ranked
	// embeds each Candidate) and keeps nothing.
	cands := slices.Grow(c.candBuf[:0], n)
	for _, r := range cn.peers {
		for _, p := range c.byRemote[r] {
			cand := c.candidate(p, cur)
			// A connection that forbids NAT and probes with a method that
			// can see one does not move onto a pair before its verdict:
			// until then the pair counts as NATed.
			if cn.pol.NAT == policy.NATForbid && natVisible(cn.pol.Method) && p.stats.NAT == NATUnknown {
				cand.NAT = true
			}
			cands = append(cands, cand)
		}
	}
	rr := &rankResult{ranked: c.ranker.Rank(cn.pol, cands), winner: -1}
	c.candBuf = cands[:0]
	for i := range rr.ranked {
		r := &rr.ranked[i]
		if r.Eligible && (cn.prefer == "" || r.Uplink.Name == cn.prefer) {
			rr.winner = i
			break
		}
	}
	if rr.winner < 0 && cn.prefer != "" {
		for i := range rr.ranked {
			if rr.ranked[i].Eligible {
				rr.winner = i
				break
			}
		}
	}
	for i := range rr.ranked {
		r := &rr.ranked[i]
		if r.Usable && r.NAT && cn.pol.NAT == policy.NATForbid && cn.pol.Allows(r.Uplink) && !r.Uplink.Exclude {
			rr.natExcluded = append(rr.natExcluded, Pair{Local: r.Local, Remote: r.Remote})
		}
	}
	if c.rankCache == nil {
		c.rankCache = map[rankKey]*rankResult{}
	}
	c.rankCache[key] = rr
	return rr
}

// eligible reports whether p is an eligible pair in the ranking.
func (rr *rankResult) eligible(p Pair) bool {
	for i := range rr.ranked {
		if r := &rr.ranked[i]; r.Local == p.Local && r.Remote == p.Remote {
			return r.Eligible
		}
	}
	return false
}

// choose picks the group's pair for a move that is not forced: the first
// of the lead's candidates (filtered: its operator override, the current
// pair's address family, the pairs that satisfy the most steered members) in
// the lead's ranking order.
func (c *Controller) choose(steered []*conn, rrs []*rankResult, lead int, cur Pair) *policy.Ranked {
	cands := c.filtered(steered, rrs, lead, cur)
	return &rrs[lead].ranked[cands[0]]
}

// natVisible: probes of method m report a NAT verdict (ICMP echo cannot).
func natVisible(m policy.Method) bool { return m == policy.MethodSTAMP || m == policy.MethodIKE }

func (c *Controller) candidate(p *pair, cur Pair) policy.Candidate {
	return policy.Candidate{
		Local: p.p.Local, Remote: p.p.Remote,
		Uplink:     p.uplink,
		Usable:     p.usable(),
		State:      p.state.String(),
		NAT:        p.nat(),
		Deprecated: p.deprecated,
		Loss:       p.stats.LossRatio,
		RTT:        p.rtt(),
		Current:    p.p == cur,
		CurrentIs4: cur.Remote.Is4(),
	}
}

func (c *Controller) steer(g *group, from Pair, w *policy.Ranked, cause SteerCause, detail string) {
	to := Pair{Local: w.Local, Remote: w.Remote}
	g.pending = &pendingSteer{from: c.onPairs(g), to: to, at: c.now, deadline: c.now.Add(c.pol.SteerTimeout), cause: cause,
		peers: slices.Clone(g.peers)}
	c.progress(g, g.pending) // the SAs already there are no progress
	g.pair = to
	g.moves = append(g.moves, c.now)
	g.hold = holdKey{}
	c.probeDirty[to] = true // a target is probed as active
	c.observe(SteerRequested{Group: g.name, From: from, To: to, Forced: cause.Forced(), Cause: cause, Detail: detail})
	g.decision = "steering to " + to.String() + ": " + cause.String() + ": " + detail
	c.minDeadline(g, g.pending.deadline)
}

// fail ends a pending steer as failed and backs off exponentially.
func (c *Controller) fail(g *group, cause FailCause, detail string) {
	ps := g.pending
	g.pending = nil
	c.probeDirty[ps.to] = true
	g.failures++
	b := c.pol.SteerBackoff
	for i := 1; i < g.failures && b < c.pol.SteerBackoffMax; i++ {
		b *= 2
	}
	b = min(b, c.pol.SteerBackoffMax)
	g.backoffUntil = c.now.Add(b)
	c.observe(SteerFailed{Group: g.name, Pair: ps.to, Cause: cause, Detail: detail, Backoff: b})
	var reason AlertReason
	var msg string
	switch cause {
	case FailWrongPath:
		reason, msg = AlertSteerDiverted, fmt.Sprintf("steer to %s: %s; does charon know peer addresses mobiked does not (add them to the connection's peer addresses)?", ps.to, detail)
	case FailKernel:
		reason, msg = AlertSteerApply, fmt.Sprintf("steer to %s failed: %s", ps.to, detail)
	default:
		reason, msg = AlertSteerUnconfirmed, fmt.Sprintf("steer to %s not confirmed within %s: %s", ps.to, c.pol.SteerTimeout, steerHint)
	}
	c.acts = append(c.acts, ActAlert{Severity: SevWarning, Conn: g.name, Reason: reason, Message: msg})
	g.alerts[alertKey{reason, g.name}] = true
	c.markGroup(g)
	c.minDeadline(g, g.backoffUntil)
}

// abandon drops a pending steer that no longer makes sense, without backoff.
func (c *Controller) abandon(g *group, cause FailCause, detail string) {
	ps := g.pending
	g.pending = nil
	c.probeDirty[ps.to] = true
	c.observe(SteerFailed{Group: g.name, Pair: ps.to, Cause: cause, Detail: detail})
	c.markGroup(g)
}

func (c *Controller) minDeadline(g *group, t time.Time) {
	if g.deadline.IsZero() || t.Before(g.deadline) {
		g.deadline = t
	}
}

// alert emits an alert once until clearAlert.
func (c *Controller) alert(g *group, sev Severity, reason AlertReason, conn, msg string) {
	k := alertKey{reason, conn}
	if g.alerts[k] {
		return
	}
	g.alerts[k] = true
	c.acts = append(c.acts, ActAlert{Severity: sev, Conn: conn, Reason: reason, Message: msg})
}

func (c *Controller) clearAlert(g *group, reason AlertReason, conn string) {
	delete(g.alerts, alertKey{reason, conn})
}

// noteConflicts records, for every member, whether the group's pair breaks
// its policy (a policy conflict: disjoint allowed uplinks, one member
// forbids NAT, ...), with an observation and an alert when that changes.
// The answer is the same for the steered members of a class: the members
// are looked at only when a class's answer or its steered members changed.
func (c *Controller) noteConflicts(g *group, steered []*conn) {
	changed := false
	for _, k := range g.classes {
		why := ""
		if g.pair.Local.IsValid() && len(steered) > 0 && k.nSteer > 0 {
			why = c.conflictWith(k.members[0], g.pair)
		}
		k.changed = !k.noted || why != k.conflict
		k.noted, k.conflict = true, why
		changed = changed || k.changed
	}
	if !changed {
		return
	}
	for _, m := range g.members {
		if !m.class.changed {
			continue
		}
		why := ""
		if m.nSteer > 0 {
			why = m.class.conflict
		}
		if why == m.conflict {
			continue
		}
		m.conflict = why
		if why == "" {
			c.clearAlert(g, AlertPolicyConflict, m.name)
			c.observe(PolicyConflict{Conn: m.name, Group: g.name})
			continue
		}
		c.observe(PolicyConflict{Conn: m.name, Group: g.name, Pair: g.pair, Lead: g.lead, Detail: why})
		c.alert(g, SevWarning, AlertPolicyConflict, m.name, fmt.Sprintf("%s shares steering group %s (peer addresses overlap): its SAs are on %s, chosen for %s, although %s",
			m.name, g.name, g.pair, g.lead, why))
	}
}

// conflictWith says why pair p breaks cn's policy ("" = it does not): the
// policy, not the path state, decides (a dead pair is no conflict).
func (c *Controller) conflictWith(cn *conn, p Pair) string {
	if !cn.follows(p) {
		return "peer address " + p.Remote.String() + " is not one of its peer addresses"
	}
	pp := c.pairs[p]
	switch {
	case pp == nil:
		return ""
	case !cn.pol.Allows(pp.uplink):
		return "uplink " + pp.uplink.Name + " is not allowed for it"
	case pp.nat() && cn.pol.NAT == policy.NATForbid:
		return "the pair has a NAT and it forbids NAT"
	}
	return ""
}

// suspicion grades a candidate for a forced move off the failed pair cur:
// 0 shares neither its uplink nor its peer address, 1 shares one but
// answered after cur's last reply, 2 shares one and did not (or is
// unknown).
func (c *Controller) suspicion(p, failed Pair) int {
	cp, q := c.pairs[failed], c.pairs[p]
	switch {
	case q == nil:
		return 2
	case cp == nil:
		return 0
	case q.linkIdx != cp.linkIdx && p.Remote != failed.Remote:
		return 0
	case q.stats.LastReply.After(cp.stats.LastReply):
		return 1
	}
	return 2
}
