package mobike

import (
	"fmt"
	"slices"
	"time"
)

// In-band evidence (issue 16 item 3). A tunnel that carries traffic tells
// about its path for free: when the IKE_SA's CHILD_SAs keep sending but
// nothing comes back for a few round trips, while the peer normally
// answers, the path may have failed. That is a hint, not a verdict: the
// core asks the current pair's prober for a confirmation burst at once
// (ActProbeConfirm) instead of waiting for the next probe interval, and the
// burst decides (a one-way stream, an idle peer, a slow application are no
// failure and cost one burst).
//
// The adapter reads the counters (the kernel's XFRM states where it does
// ESP, else VICI list-sas; EvTraffic.Source) of the SAs the core lists
// in ActTrafficWatch: one SA per steering group on its current pair (the
// group's SAs share the path), within the adapter's cost budget.

// SARef names one IKE_SA.
type SARef struct {
	Conn     string
	UniqueID uint32
}

func (r SARef) String() string { return fmt.Sprintf("%s#%d", r.Conn, r.UniqueID) }

// EvTraffic reports the traffic counters of one watched IKE_SA (its
// CHILD_SAs summed), read at At from Source; Set identifies the CHILD_SAs
// counted (a hash of their IDs, 0 when unknown). Counters that went
// backwards, or that come from another source or another set of CHILD_SAs
// (a rekey, a CHILD_SA added or gone) than the previous reading restart the
// comparison: a sum over other SAs could grow on the sending side only.
type EvTraffic struct {
	SA                                       SARef
	At                                       time.Time
	Source                                   CounterSource
	Set                                      uint64
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
}

// ChildSet is the EvTraffic.Set of the CHILD_SAs with these IDs, in any
// order (an FNV-1a hash of the sorted IDs).
func ChildSet(ids []uint64) uint64 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	h := uint64(14695981039346656037)
	for _, id := range ids {
		for i := range 8 {
			h ^= uint64(byte(id >> (8 * i)))
			h *= 1099511628211
		}
	}
	return h
}

// CounterSource says where a reading's counters come from. Two sources
// count differently (the kernel's XFRM states vs charon's view, which may
// sum other CHILD_SAs or lag), so readings of different sources are never
// compared: a switch could look like packets sent with none received.
type CounterSource uint8

const (
	CounterSourceUnknown CounterSource = iota
	// CounterSourceVICI: charon's list-sas (kernel-libipsec or any kernel).
	CounterSourceVICI
	// CounterSourceXFRM: the kernel's XFRM state statistics (netlink).
	CounterSourceXFRM
)

var counterSourceNames = [...]string{
	CounterSourceUnknown: "unknown",
	CounterSourceVICI:    "vici",
	CounterSourceXFRM:    "xfrm",
}

func (s CounterSource) String() string {
	if int(s) < len(counterSourceNames) {
		return counterSourceNames[s]
	}
	return fmt.Sprintf("CounterSource(%d)", uint8(s))
}

// ActTrafficWatch is the full set of IKE_SAs whose counters the core wants
// read (level-triggered: each replaces the previous; empty = none), sorted.
type ActTrafficWatch struct{ SAs []SARef }

func (EvTraffic) isEvent()        {}
func (ActTrafficWatch) isAction() {}

const (
	// silenceRTTs: sent but nothing received for this many SRTTs of the
	// current pair is a hint.
	silenceRTTs = 3
	// minSilence is the hint's floor: the counters' read interval and an
	// idle peer's delayed acknowledgements are of this order.
	minSilence = 100 * time.Millisecond
)

// traffic is a group's in-band state: the watched SA's last counters.
type traffic struct {
	ref       SARef
	seen      bool // counters read at least once
	source    CounterSource
	set       uint64
	in, out   uint64
	at        time.Time // the last read
	inAt      time.Time // the last read where packets came in
	sentSince time.Time // packets went out since this read without any coming in (zero: none)
	answered  bool      // packets came in after packets went out: the peer answers
	hinted    bool      // a burst was asked for this silence
}

// TrafficHint: the group's SA sent for Silent without receiving anything,
// so the core asked for a confirmation burst on Pair.
type TrafficHint struct {
	Group  string
	SA     SARef
	Pair   Pair
	Silent time.Duration
}

func (TrafficHint) isObservation() {}
func (o TrafficHint) String() string {
	return fmt.Sprintf("traffic-hint %s %s on %s: sent, nothing received for %s", o.Group, o.SA, o.Pair, o.Silent)
}

// onTraffic applies a counter reading of a watched SA.
func (c *Controller) onTraffic(ev EvTraffic) {
	g := c.watched[ev.SA]
	if g == nil || g.traffic == nil || g.traffic.ref != ev.SA {
		return // no longer watched: a late reading
	}
	t := g.traffic
	if !t.seen || ev.Source != t.source || ev.Set != t.set || ev.PacketsIn < t.in || ev.PacketsOut < t.out || ev.At.Before(t.at) {
		*t = traffic{ref: t.ref, seen: true, source: ev.Source, set: ev.Set, in: ev.PacketsIn, out: ev.PacketsOut, at: ev.At, inAt: ev.At, answered: t.answered}
		return
	}
	dIn, dOut := ev.PacketsIn-t.in, ev.PacketsOut-t.out
	prev := t.at
	t.in, t.out, t.at = ev.PacketsIn, ev.PacketsOut, ev.At
	if dIn > 0 {
		if dOut > 0 || !t.sentSince.IsZero() {
			t.answered = true
		}
		t.inAt, t.sentSince, t.hinted = ev.At, time.Time{}, false
		return
	}
	if dOut > 0 && t.sentSince.IsZero() {
		t.sentSince = prev // the packets left after the previous read
	}
	if t.sentSince.IsZero() || !t.answered || t.hinted {
		return
	}
	// Only for the pair the SA is on, not during a steer (the silence may
	// be the move itself).
	s := c.sas[t.ref.UniqueID]
	p := c.pairs[g.pair]
	if s == nil || s.pair != g.pair || g.pending != nil || p == nil || !p.usable() {
		return
	}
	silent := ev.At.Sub(t.sentSince)
	if silent < max(silenceRTTs*p.stats.SRTT, minSilence) {
		return
	}
	t.hinted = true
	c.observe(TrafficHint{Group: g.name, SA: t.ref, Pair: g.pair, Silent: silent})
	if !p.stats.Confirming && confirmable(p) {
		c.acts = append(c.acts, ActProbeConfirm{Pair: g.pair})
	}
}

// watchConn marks connection name's group for syncWatch.
func (c *Controller) watchConn(name string) {
	if c.watchConns == nil {
		c.watchConns = map[string]bool{}
	}
	c.watchConns[name] = true
}

// syncWatch recomputes the watched SAs (one per group, watchOf) of the
// groups whose SAs changed, or of all after the groups changed, and returns
// the ActTrafficWatch to emit when the set changed.
func (c *Controller) syncWatch() (ActTrafficWatch, bool) {
	changed := false
	set := func(g *group) {
		ref, ok := c.watchOf(g)
		if g.traffic != nil && (!ok || g.traffic.ref != ref) {
			delete(c.watched, g.traffic.ref)
			g.traffic, changed = nil, true
		}
		if ok && g.traffic == nil {
			g.traffic = &traffic{ref: ref}
			c.watched[ref] = g
			changed = true
		}
	}
	if c.watchAll || c.watched == nil {
		old := c.watched
		c.watched = make(map[SARef]*group, len(c.groups))
		for _, g := range c.groups {
			if g.traffic != nil {
				c.watched[g.traffic.ref] = g
			}
			set(g)
		}
		changed = changed || len(old) != len(c.watched)
		for ref, g := range old {
			if c.watched[ref] != g {
				changed = true
			}
		}
	} else {
		for name := range c.watchConns {
			if cn := c.conns[name]; cn != nil && cn.group != nil {
				set(cn.group)
			}
		}
	}
	c.watchAll = false
	clear(c.watchConns)
	if !changed {
		return ActTrafficWatch{}, false
	}
	refs := make([]SARef, 0, len(c.watched))
	for ref := range c.watched {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b SARef) int {
		if a.Conn != b.Conn {
			if a.Conn < b.Conn {
				return -1
			}
			return 1
		}
		return int(a.UniqueID) - int(b.UniqueID)
	})
	if slices.Equal(refs, c.watchList) {
		return ActTrafficWatch{}, false
	}
	c.watchList = refs
	return ActTrafficWatch{SAs: slices.Clone(refs)}, true
}

// watchOf is the SA whose counters stand for group g's path: the first
// established SA of its first member (the group's SAs share one pair; the
// choice does not follow steers, so a steer does not change the watch).
func (c *Controller) watchOf(g *group) (SARef, bool) {
	for _, cn := range g.members {
		for _, id := range cn.sas {
			if s := c.sas[id]; s != nil && s.sa.State == IKEEstablished {
				return SARef{Conn: cn.name, UniqueID: id}, true
			}
		}
	}
	return SARef{}, false
}
