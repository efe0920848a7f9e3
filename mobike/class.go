package mobike

import (
	"net/netip"
	"slices"
)

// class is a set of members of one steering group with identical ranking
// inputs: connections with equal policy settings (the name aside) and equal
// peer addresses, without an operator override (1 001 connections to one
// gateway are one class). A connection with an override is a class of its
// own. A group evaluation ranks once per class, not once per member, and
// works on the class's counters instead of the members' SAs, so that a
// probe result costs the same for a group of 1 000 connections as for one.
// The first member of a class by priority (before) stands for it: its
// ranking's reasons name it.
type class struct {
	members []*conn // by priority (before)
	nSteer  int     // members with a steerable SA
	// first is the first member with a steerable SA (nil when none); when
	// stale it must be looked up again.
	first *conn
	stale bool
	// on counts the members' steerable SAs by pair, fixed their other SAs
	// (responder, not established) by peer address; no zero entries.
	on    map[Pair]int
	fixed map[netip.Addr]int

	// noted: conflict is what noteConflicts last recorded for the steered
	// members (cleared when the set of steered members changes).
	noted    bool
	conflict string
	changed  bool // noteConflicts: conflict changed in this evaluation
	natNoted bool // some member has NAT-excluded pairs recorded
}

func addCount[K comparable](m map[K]int, k K, d int) (was, now int) {
	was = m[k]
	now = was + d
	if now == 0 {
		delete(m, k)
	} else {
		m[k] = now
	}
	return was, now
}

// account adds (d = 1) or takes away (d = -1) SA s of cn from the counters
// the core keeps instead of looking at every SA: SAs per pair, cn's
// initiator and steerable SAs, and its class's.
func (c *Controller) account(cn *conn, s *saState, d int) {
	if was, now := addCount(c.saOn, s.pair, d); was == 0 || now == 0 {
		c.dirtyRemote(s.pair.Remote) // a responder-only peer address has pairs where SAs are
		c.probeDirty[s.pair] = true  // an active pair is probed more often
	}
	if s.sa.Initiator {
		cn.nInit += d
	}
	k := cn.class
	if !steerable(s.sa) {
		if k != nil {
			addCount(k.fixed, s.pair.Remote, d)
		}
		return
	}
	cn.nSteer += d
	if k == nil {
		return
	}
	addCount(k.on, s.pair, d)
	switch {
	case d > 0 && cn.nSteer == 1:
		k.nSteer++
		k.noted = false
		if !k.stale && (k.first == nil || before(cn, k.first) < 0) {
			k.first = cn
		}
	case d < 0 && cn.nSteer == 0:
		k.nSteer--
		k.noted = false
		if k.first == cn {
			k.first = nil
			k.stale = k.nSteer > 0
		}
	}
}

// buildClasses splits the group's members into classes and counts their
// SAs (after the membership, a member's peer addresses, policy or override
// changed).
func (c *Controller) buildClasses(g *group) {
	type key struct {
		pol   string
		peers uint64
	}
	var classes []*class
	var byKey map[key][]*class
	for _, m := range g.members {
		var k *class
		if shared := m.prefer == "" && len(g.members) > 1; shared {
			if byKey == nil {
				byKey = map[key][]*class{}
			}
			kk := key{m.polKey, hashAddrs(m.peers)}
			for _, x := range byKey[kk] {
				if slices.Equal(x.members[0].peers, m.peers) {
					k = x
					break
				}
			}
			if k == nil {
				k = &class{}
				byKey[kk] = append(byKey[kk], k)
			}
		} else {
			k = &class{}
		}
		if len(k.members) == 0 {
			k.on, k.fixed = map[Pair]int{}, map[netip.Addr]int{}
			classes = append(classes, k)
		}
		k.members = append(k.members, m)
		m.class = k
	}
	g.dgOK = false
	for _, k := range classes {
		if !slices.IsSortedFunc(k.members, before) {
			slices.SortStableFunc(k.members, before) // listed members first
		}
		for _, m := range k.members {
			if m.nSteer > 0 {
				k.nSteer++
				if k.first == nil {
					k.first = m
				}
			}
			k.natNoted = k.natNoted || len(m.natExcluded) > 0
			for _, id := range m.sas {
				s := c.sas[id]
				if steerable(s.sa) {
					k.on[s.pair]++
				} else {
					k.fixed[s.pair.Remote]++
				}
			}
		}
	}
	g.classes = classes
}

// hashAddrs is an FNV-1a hash of the addresses (equal slices, equal hashes;
// buildClasses compares the slices on a match).
func hashAddrs(as []netip.Addr) uint64 {
	h := uint64(14695981039346656037)
	for _, a := range as {
		b := a.As16()
		for _, x := range b {
			h ^= uint64(x)
			h *= 1099511628211
		}
		h ^= uint64(a.BitLen())
		h *= 1099511628211
	}
	return h
}

// firstSteered returns the class's first member with a steerable SA.
func (k *class) firstSteered() *conn {
	if k.stale {
		k.first, k.stale = nil, false
		for _, m := range k.members {
			if m.nSteer > 0 {
				k.first = m
				break
			}
		}
	}
	return k.first
}

// follows reports whether the class's members can be on p.
func (k *class) follows(p Pair) bool { return k.members[0].follows(p) }
