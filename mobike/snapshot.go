package mobike

import (
	"net/netip"
	"slices"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// State is a read-only snapshot of the Controller (for mobikectl and the
// metrics collector). It shares no memory with the Controller.
type State struct {
	At       time.Time // now of the last Step
	CharonUp bool
	Uplinks  []UplinkView // by link index
	Pairs    []PairView   // by pair
	SAs      []SAView     // by unique ID
	Conns    []ConnView   // by name
}

// UplinkView is one link with its policy and addresses.
type UplinkView struct {
	Link
	Policy  policy.UplinkPolicy
	Gateway []netip.Addr // next hops by family (v4 first)
	Addrs   []AddrView
}

// AddrView is one address with its RFC 4621 §2 status.
type AddrView struct {
	Address
	Available   bool
	Operational bool       // locally operational
	Why         PathReason // why not locally operational (ReasonNone when it is)
}

// PairView is one candidate pair.
type PairView struct {
	Pair        Pair
	LinkIdx     int
	Uplink      string
	State       PathState
	Reason      PathReason
	Since       time.Time // entry into State
	StableSince time.Time // entry into operational; zero when not operational
	Stats       PathStats
	Probe       ActProbeStart // the running prober's parameters
	Deprecated  bool
}

// SAView is one IKE_SA and the pair it is on.
type SAView struct {
	SA
	Pair Pair
}

// ConnView is one connection with its steering group's state and its
// ranking explanation. The decision fields (Steering to Deadline, Decision)
// are the group's: every member of a group shows the same.
type ConnView struct {
	Name    string
	Policy  policy.ConnPolicy
	Peers   []netip.Addr
	SAs     []uint32
	Current Pair // pair of the lowest-ID initiator SA; zero when none
	// Group is the steering group's name ("" when the connection is not
	// live), Members its connections, GroupPair the pair the routing state
	// puts the group on (zero: none), Lead the member whose policy chose it.
	Group     string
	Members   []string // shared by the group's members: read-only
	GroupPair Pair
	Lead      string
	// Conflict says why GroupPair breaks this connection's policy ("" = it
	// does not).
	Conflict      string
	Steering      bool // a steer is waiting for confirmation
	SteerTo       Pair
	SteerSince    time.Time
	Failures      int // consecutive failed steers
	BackoffUntil  time.Time
	MovesInWindow int
	Prefer        string
	PreferUntil   time.Time
	Deadline      time.Time
	// Ranking is the policy's ranking of every candidate with its reason
	// (shared between connections with identical inputs: read-only)
	// (mobikectl explain); Decision the last decision in words.
	Ranking  []policy.Ranked
	Decision string
}

// Snapshot returns a copy of the Controller's state.
func (c *Controller) Snapshot() State {
	// Fresh rankings (the cache may hold rankings from before the last
	// probe results); filled again below, and cleared by the next decide.
	clear(c.rankCache)
	st := State{At: c.now, CharonUp: c.charonUp, Pairs: make([]PairView, 0, len(c.pairKeys)),
		SAs: make([]SAView, 0, len(c.sas)), Conns: make([]ConnView, 0, len(c.connList))}
	for _, l := range c.net.Links {
		u := UplinkView{Link: l, Policy: c.uplinks[l.Index]}
		for _, v4 := range []bool{true, false} {
			if nh := c.nexthop(l.Index, v4); nh.IsValid() {
				u.Gateway = append(u.Gateway, nh)
			}
		}
		for _, a := range c.net.Addrs {
			if a.LinkIdx != l.Index {
				continue
			}
			why := c.localWhy[a.Prefix.Addr().Unmap()]
			u.Addrs = append(u.Addrs, AddrView{Address: a, Available: Available(a), Operational: why == ReasonNone, Why: why})
		}
		st.Uplinks = append(st.Uplinks, u)
	}
	for _, k := range c.pairKeys {
		p := c.pairs[k]
		st.Pairs = append(st.Pairs, PairView{
			Pair: k, LinkIdx: p.linkIdx, Uplink: p.uplink.Name, State: p.state, Reason: p.reason,
			Since: p.since, StableSince: p.stable, Stats: p.stats, Probe: p.started, Deprecated: p.deprecated,
		})
	}
	ids := make([]uint32, 0, len(c.sas))
	for id := range c.sas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := c.sas[id]
		sa := s.sa
		sa.VIPs = slices.Clone(sa.VIPs)
		st.SAs = append(st.SAs, SAView{SA: sa, Pair: s.pair})
	}
	members := map[*group][]string{}
	for _, cn := range c.connList {
		v := ConnView{
			Name: cn.name, Policy: clonePolicy(cn.pol), Peers: slices.Clone(cn.peers), SAs: slices.Clone(cn.sas),
			Prefer: cn.prefer, PreferUntil: cn.preferUntil, Conflict: cn.conflict, Decision: "not loaded in charon",
		}
		if g := cn.group; g != nil {
			v.Group, v.GroupPair, v.Lead = g.name, g.pair, g.lead
			if _, ok := members[g]; !ok {
				members[g] = slices.Clone(g.names)
			}
			v.Members = members[g]
			v.Failures, v.BackoffUntil, v.Deadline, v.Decision = g.failures, g.backoffUntil, g.deadline, g.decision
			if cn.conflict != "" {
				v.Decision += "; policy conflict: " + cn.conflict + " (the group's pair was chosen for " + g.lead + ")"
			}
			for _, t := range g.moves {
				if c.now.Before(t.Add(cn.pol.MoveWindow)) {
					v.MovesInWindow++
				}
			}
			if ps := g.pending; ps != nil {
				v.Steering, v.SteerTo, v.SteerSince = true, ps.to, ps.at
			}
		}
		if s := c.firstInitiator(cn); s != nil {
			v.Current = s.pair
		}
		// The members of a class with the same current pair share one
		// ranking (1 001 connections to one gateway: one ranking, not
		// 1 001 — the daemon takes a snapshot every second for metrics).
		// A listed connection ranks on its own here: the reasons name it.
		v.Ranking = c.rankOwn(cn, v.Current).ranked
		st.Conns = append(st.Conns, v)
	}
	return st
}

func clonePolicy(p policy.ConnPolicy) policy.ConnPolicy {
	p.AllowedUplinks = slices.Clone(p.AllowedUplinks)
	p.ExtraPeers = slices.Clone(p.ExtraPeers)
	return p
}

// GroupsOn returns the names of the steering groups that have a steerable
// SA on pair p, in key order (cheap: no snapshot).
func (c *Controller) GroupsOn(p Pair) []string {
	var out []string
	for _, g := range c.groups {
		for _, k := range g.classes {
			if k.on[p] > 0 {
				out = append(out, g.name)
				break
			}
		}
	}
	return out
}
