package mobike

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// Alert reasons (ActAlert.Reason), a closed set.
const (
	AlertNoPath           = "no-path"
	AlertNATForbidden     = "nat-forbidden"
	AlertSteerUnconfirmed = "steer-unconfirmed"
	AlertSteerApply       = "steer-apply-failed"
	AlertSteerDiverted    = "steer-diverted"
	AlertMoveBudget       = "move-budget-exhausted"
)

// steerHint is the operator message of an unconfirmed steer.
const steerHint = "charon did not move the SA; are prefer_best_path, fwmark and process_rules set? see deploy/strongswan.d/mobiked.conf"

// decide evaluates every connection whose inputs changed or whose deadline
// has come, in name order.
func (c *Controller) decide() {
	if !c.anyDirty && (c.deadline.IsZero() || c.now.Before(c.deadline)) {
		return
	}
	c.anyDirty, c.decided = false, true
	clear(c.rankCache)
	for _, cn := range c.connList {
		if cn.dirty || (!cn.deadline.IsZero() && !c.now.Before(cn.deadline)) {
			c.evaluate(cn)
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

// diverted returns the pair a steerable SA of cn moved to that is neither
// the steer's origin nor its target (zero when none), and whether its remote
// address was unknown when the steer was requested.
func (c *Controller) diverted(cn *conn, ps *pendingSteer) (Pair, bool) {
	for _, id := range cn.sas {
		if s := c.sas[id]; steerable(s.sa) && s.pair != ps.to && s.pair != ps.from {
			return s.pair, !slices.Contains(ps.peers, s.pair.Remote)
		}
	}
	return Pair{}, false
}

// allOn reports whether every steerable SA of cn is on p.
func (c *Controller) allOn(cn *conn, p Pair) bool {
	for _, id := range cn.sas {
		if s := c.sas[id]; steerable(s.sa) && s.pair != p {
			return false
		}
	}
	return true
}

func (c *Controller) evaluate(cn *conn) {
	now := c.now
	cn.dirty = false
	cn.deadline = time.Time{}
	if cn.prefer != "" {
		if !now.Before(cn.preferUntil) {
			cn.prefer, cn.preferUntil = "", time.Time{}
			c.observe(PreferChanged{Conn: cn.name})
		} else {
			cn.deadline = cn.preferUntil
		}
	}
	first := c.firstInitiator(cn)
	if first == nil {
		if cn.pending != nil {
			c.abandon(cn, "no initiator sa")
		}
		cn.decision = "monitor only: no established SA of ours (responder side or not up)"
		if len(cn.sas) == 0 {
			cn.decision = "no SA"
		}
		c.clearAlert(cn, AlertNoPath)
		c.clearAlert(cn, AlertNATForbidden)
		return
	}
	cur := first.pair

	if ps := cn.pending; ps != nil {
		all := c.allOn(cn, ps.to)
		target := c.pairs[ps.to]
		diverted, learned := c.diverted(cn, ps)
		switch {
		case all:
			c.observe(SteerConfirmed{Conn: cn.name, Pair: ps.to, After: now.Sub(ps.at)})
			cn.pending, cn.failures = nil, 0
			c.activeOK = false
			c.clearAlert(cn, AlertSteerUnconfirmed)
			c.clearAlert(cn, AlertSteerApply)
		case diverted.Local.IsValid() && learned:
			// charon went to a peer address we did not know when we
			// steered (lab-notes "Trap"); now it is known and will be
			// prohibited: steer again at once.
			c.abandon(cn, "charon moved to "+diverted.String()+", a peer address unknown at the steer")
		case diverted.Local.IsValid():
			c.fail(cn, "charon moved to "+diverted.String()+" instead")
		case !now.Before(ps.deadline):
			c.fail(cn, "unconfirmed")
		case target == nil || !target.usable():
			c.abandon(cn, "target no longer usable")
		default:
			cn.decision = "waiting for charon to move to " + ps.to.String()
			c.minDeadline(cn, ps.deadline)
			return
		}
	}

	rr := c.rank(cn, cur)
	ranked, winner, natBlocked := rr.ranked, rr.winner, len(rr.natExcluded) > 0
	if natBlocked || len(cn.natExcluded) > 0 {
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

	curWhy := c.currentProblem(cn, cur)
	if curWhy != "" {
		if winner < 0 {
			reason, msg := AlertNoPath, "current pair "+cur.String()+" "+curWhy+" and no other pair is usable"
			if natBlocked {
				reason, msg = AlertNATForbidden, "only NATed pairs are usable and the connection forbids NAT; staying on "+cur.String()
			}
			cn.decision = "stay: " + msg
			if !cn.alerts[reason] {
				c.observe(NoPath{Conn: cn.name, Reason: reason})
			}
			c.alert(cn, SevCritical, reason, msg)
			return
		}
		c.clearAlert(cn, AlertNoPath)
		c.clearAlert(cn, AlertNATForbidden)
		if now.Before(cn.backoffUntil) {
			cn.decision = "backing off after a failed steer"
			c.minDeadline(cn, cn.backoffUntil)
			return
		}
		c.steer(cn, cur, &ranked[c.freshWinner(ranked, winner, cur)], true, "current pair "+curWhy)
		return
	}
	c.clearAlert(cn, AlertNoPath)
	c.clearAlert(cn, AlertNATForbidden)
	if winner < 0 || (Pair{Local: ranked[winner].Local, Remote: ranked[winner].Remote}) == cur {
		cn.hold = holdKey{}
		cn.decision = "stay: current pair is the best"
		return
	}
	w := &ranked[winner]
	wk := Pair{Local: w.Local, Remote: w.Remote}
	preferred := cn.prefer != "" && w.Uplink.Name == cn.prefer
	if cp := c.pairs[cur]; !preferred && !cp.state.Usable() {
		// The current pair has no verdict yet (just started, e.g. after a
		// restart of mobiked): wait for it rather than compare.
		cn.hold = holdKey{}
		cn.decision = "stay: current pair not tested yet"
		return
	}
	if now.Before(cn.backoffUntil) {
		cn.decision = "backing off after a failed steer"
		c.minDeadline(cn, cn.backoffUntil)
		return
	}
	if !preferred {
		wp := c.pairs[wk]
		if wp.state != PathOperational {
			cn.decision = "stay: better pair " + wk.String() + " is not stably operational"
			return
		}
		until := wp.stable.Add(cn.pol.Hold())
		if now.Before(until) {
			if cn.hold != (holdKey{wk, until}) {
				cn.hold = holdKey{wk, until}
				c.observe(HoldDownStarted{Conn: cn.name, Pair: wk, Until: until})
			}
			cn.decision = "hold-down: " + wk.String() + " must stay operational until " + until.UTC().Format(time.RFC3339)
			c.minDeadline(cn, until)
			return
		}
	}
	// Move budget (anti-flap).
	win := cn.pol.MoveWindow
	cn.moves = slices.DeleteFunc(cn.moves, func(t time.Time) bool { return !now.Before(t.Add(win)) })
	if len(cn.moves) >= cn.pol.MoveBudget {
		until := cn.moves[0].Add(win)
		if !cn.budgetNoted.Equal(until) {
			cn.budgetNoted = until
			c.observe(MoveBudgetExhausted{Conn: cn.name, Want: wk, Until: until})
			c.alert(cn, SevWarning, AlertMoveBudget, fmt.Sprintf("%d moves in %s: staying on %s instead of moving to %s", len(cn.moves), win, cur, wk))
		}
		cn.decision = "stay: move budget exhausted until " + until.UTC().Format(time.RFC3339)
		c.minDeadline(cn, until)
		return
	}
	c.clearAlert(cn, AlertMoveBudget)
	why := "better: " + strings.TrimPrefix(w.Reason, "best: ")
	if preferred {
		why = "operator prefers uplink " + cn.prefer
	}
	c.steer(cn, cur, w, false, why)
}

// currentProblem says why the connection must leave its current pair at once
// ("" = it may stay). An untested current pair is fine: the SA is there and
// charon keeps it alive (adopting it is what keeps a restart from moving).
func (c *Controller) currentProblem(cn *conn, cur Pair) string {
	p, ok := c.pairs[cur]
	switch {
	case !ok:
		if w, ok := c.localWhy[cur.Local]; ok && w != ReasonNone {
			return "is gone (" + w.String() + ")"
		}
		if _, ok := c.localWhy[cur.Local]; !ok {
			return "is gone (addr-gone)"
		}
		return "is not a candidate"
	case p.state == PathDown:
		return "is down (" + p.reason.String() + ")"
	case !cn.pol.Allows(p.uplink):
		return "is on uplink " + p.uplink.Name + ", not allowed"
	case p.nat() && cn.pol.NAT == policy.NATForbid:
		return "has a NAT and the connection forbids NAT"
	}
	return ""
}

// rankResult is a ranking and what the decision needs from it.
type rankResult struct {
	ranked      []policy.Ranked
	winner      int    // index of the pair to be on, -1 for none
	natExcluded []Pair // usable, allowed pairs excluded only for NAT
}

// rank returns the ranking of the connection's candidates, shared between
// connections with the same policy, peers, current pair and override within
// a Step.
func (c *Controller) rank(cn *conn, cur Pair) *rankResult {
	pk := "\x00"
	if cn.explicit {
		pk = cn.name
	}
	key := rankKey{pol: pk, peers: cn.peersID, cur: cur, pref: cn.prefer}
	if r, ok := c.rankCache[key]; ok {
		return r
	}
	var cands []policy.Candidate
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

func (c *Controller) steer(cn *conn, from Pair, w *policy.Ranked, forced bool, why string) {
	to := Pair{Local: w.Local, Remote: w.Remote}
	p := c.pairs[to]
	var prohibit []netip.Addr
	for _, a := range cn.peers {
		if a != to.Remote {
			prohibit = append(prohibit, a)
		}
	}
	c.acts = append(c.acts, ActSteer{
		Peer:     cn.name,
		Pair:     to,
		LinkIdx:  p.linkIdx,
		Uplink:   p.uplink.Name,
		Nexthop:  c.nexthop(p.linkIdx, to.Remote.Is4()),
		Prohibit: prohibit,
		Reason:   why,
	})
	cn.pending = &pendingSteer{from: from, to: to, at: c.now, deadline: c.now.Add(c.pol.SteerTimeout), forced: forced, peers: cn.peers}
	cn.moves = append(cn.moves, c.now)
	cn.hold = holdKey{}
	c.activeOK = false
	c.observe(SteerRequested{Conn: cn.name, From: from, To: to, Forced: forced, Reason: why})
	cn.decision = "steering to " + to.String() + ": " + why
	c.minDeadline(cn, cn.pending.deadline)
}

// fail ends a pending steer as failed and backs off exponentially.
func (c *Controller) fail(cn *conn, why string) {
	ps := cn.pending
	cn.pending = nil
	c.activeOK = false
	cn.failures++
	b := c.pol.SteerBackoff
	for i := 1; i < cn.failures && b < c.pol.SteerBackoffMax; i++ {
		b *= 2
	}
	b = min(b, c.pol.SteerBackoffMax)
	cn.backoffUntil = c.now.Add(b)
	c.observe(SteerFailed{Conn: cn.name, Pair: ps.to, Reason: why, Backoff: b})
	reason, msg := AlertSteerUnconfirmed, fmt.Sprintf("steer to %s not confirmed within %s: %s", ps.to, c.pol.SteerTimeout, steerHint)
	switch {
	case strings.HasPrefix(why, "charon moved"):
		reason, msg = AlertSteerDiverted, fmt.Sprintf("steer to %s: %s; does charon know peer addresses mobiked does not (add them to the connection's peer addresses)?", ps.to, why)
	case why != "unconfirmed":
		reason, msg = AlertSteerApply, fmt.Sprintf("steer to %s failed: %s", ps.to, why)
	}
	c.acts = append(c.acts, ActAlert{Severity: SevWarning, Conn: cn.name, Reason: reason, Message: msg})
	cn.alerts[reason] = true
	c.markDirty(cn)
	c.minDeadline(cn, cn.backoffUntil)
}

// abandon drops a pending steer that no longer makes sense, without backoff.
func (c *Controller) abandon(cn *conn, why string) {
	ps := cn.pending
	cn.pending = nil
	c.activeOK = false
	c.observe(SteerFailed{Conn: cn.name, Pair: ps.to, Reason: why})
	c.markDirty(cn)
}

func (c *Controller) minDeadline(cn *conn, t time.Time) {
	if cn.deadline.IsZero() || t.Before(cn.deadline) {
		cn.deadline = t
	}
}

// alert emits an alert once until clearAlert.
func (c *Controller) alert(cn *conn, sev Severity, reason, msg string) {
	if cn.alerts[reason] {
		return
	}
	cn.alerts[reason] = true
	c.acts = append(c.acts, ActAlert{Severity: sev, Conn: cn.name, Reason: reason, Message: msg})
}

func (c *Controller) clearAlert(cn *conn, reason string) { delete(cn.alerts, reason) }

// freshWinner picks the target of a forced move. A candidate on the same
// uplink as the failed current pair, or towards the same peer address, may
// share its fault: a standby pair probed once a second has usually not
// noticed the outage yet (measured in the lab: with 1 001 SAs, the move went
// first to another pair of the blackholed uplink that had answered 0.1 s
// after the failed pair's last reply, before the blackhole). So the first
// choice is the best eligible pair that shares neither; only when there is
// none, a suspect pair that answered after the failed pair's last reply; and
// only then the plain ranking winner.
func (c *Controller) freshWinner(ranked []policy.Ranked, winner int, cur Pair) int {
	cp := c.pairs[cur]
	if cp == nil {
		return winner
	}
	fresh := -1
	for i := range ranked {
		r := &ranked[i]
		if !r.Eligible {
			continue
		}
		p := c.pairs[Pair{Local: r.Local, Remote: r.Remote}]
		if p == nil {
			continue
		}
		if p.linkIdx != cp.linkIdx && p.p.Remote != cur.Remote {
			return i
		}
		if fresh < 0 && p.stats.LastReply.After(cp.stats.LastReply) {
			fresh = i
		}
	}
	if fresh >= 0 {
		return fresh
	}
	return winner
}
