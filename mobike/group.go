package mobike

import (
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// group is a steering group: the live connections whose peer address sets
// overlap (transitively). Routes steer per destination address and prohibit
// rules are host-wide, so every SA towards an address of the group must be
// on one pair: the group decides for all its members.
type group struct {
	key     string       // first member's name: stable, unique
	name    string       // for traces: key, or "key(+N)" for N more members
	idx     int          // place in Controller.groups
	members []*conn      // sorted by name
	names   []string     // the members' names (shared by Desired: read-only)
	classes []*class     // the members by ranking inputs, in member order
	peers   []netip.Addr // union of the members' peer addresses, sorted (read-only)

	dirty bool // in Controller.dirtyGroups
	// dg is the group's routing entry (has: it has one) as of netGen
	// dgNet, when dgOK.
	dg       DesiredGroup
	dgHas    bool
	dgOK     bool
	dgNet    uint64
	deadline time.Time
	decision string
	lead     string // the member whose policy chose the pair ("" = none)

	// pair is the pair the routing state puts the group on: the pending
	// steer's target, else the pair its leading member's SAs are on; zero
	// when the group has no steerable SA (its entries are released).
	pair Pair

	pending      *pendingSteer
	confirm      *confirmation // bursts the next move waits for (confirm.go)
	traffic      *traffic      // the watched SA's counters (traffic.go); nil = none
	failures     int
	backoffUntil time.Time
	moves        []time.Time // steer times within the move window
	hold         holdKey
	budgetNoted  time.Time // Until of the last MoveBudgetExhausted
	alerts       map[alertKey]bool
}

type alertKey struct {
	reason AlertReason
	conn   string
}

func groupName(members []*conn) string {
	if len(members) == 1 {
		return members[0].name
	}
	return members[0].name + "(+" + strconv.Itoa(len(members)-1) + ")"
}

// syncGroups recomputes the steering groups from the live connections'
// peer addresses. A new group takes over the old group object of its first
// member (decision state: pending steer, backoff, moves); when that object
// went to another group already (a split), it starts with a copy of its
// backoff and moves but no pending steer.
func (c *Controller) syncGroups() {
	c.groupsDirt = false
	c.watchAll = true
	var live []*conn
	for _, cn := range c.connList {
		if cn.live() {
			live = append(live, cn)
		} else {
			cn.group, cn.class = nil, nil
			cn.conflict = ""
		}
	}
	// Union-find over the live connections by shared peer address.
	parent := make([]int, len(live))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	owner := map[netip.Addr]int{}
	for i, cn := range live {
		for _, a := range cn.peers {
			if j, ok := owner[a]; ok {
				ri, rj := find(i), find(j)
				if ri != rj {
					parent[max(ri, rj)] = min(ri, rj)
				}
			} else {
				owner[a] = i
			}
		}
	}
	byRoot := map[int][]*conn{}
	var roots []int
	for i, cn := range live {
		r := find(i)
		if _, ok := byRoot[r]; !ok {
			roots = append(roots, r)
		}
		byRoot[r] = append(byRoot[r], cn)
	}
	claimed := map[*group]bool{}
	var groups []*group
	for _, r := range roots {
		members := byRoot[r] // in name order (live is)
		old := members[0].group
		var g *group
		if old != nil && !claimed[old] {
			g = old
		} else {
			g = &group{alerts: map[alertKey]bool{}}
			if old != nil {
				g.moves = slices.Clone(old.moves)
				g.failures, g.backoffUntil = old.failures, old.backoffUntil
			}
		}
		claimed[g] = true
		var peers []netip.Addr
		g.names = make([]string, len(members))
		for i, m := range members {
			peers = append(peers, m.peers...)
			g.names[i] = m.name
		}
		slices.SortFunc(peers, netip.Addr.Compare)
		g.members, g.peers = members, slices.Compact(peers)
		g.key, g.name = members[0].name, groupName(members)
		g.idx = len(groups)
		groups = append(groups, g)
	}
	clear(c.groupOf)
	for _, g := range groups {
		for _, m := range g.members {
			m.group = g
		}
		for _, a := range g.peers {
			c.groupOf[a] = g
		}
		c.buildClasses(g)
	}
	c.groups = groups
	clear(c.groupByKey)
	for _, g := range groups {
		c.groupByKey[g.key] = g
	}
	c.allDirty, c.anyDirty = true, true
	c.activeOK = false
	c.routingDirt = true
	c.desiredStale = true // groups may have come, gone or changed places
}

// before orders a group's members by priority: a connection with an active
// operator override first, then connections in the order the config lists
// them, then unlisted ones by name. The group's pair satisfies the first
// member that has an eligible pair.
func before(a, b *conn) int {
	if ap, bp := a.prefer != "", b.prefer != ""; ap != bp {
		if ap {
			return -1
		}
		return 1
	}
	if a.order != b.order {
		return a.order - b.order
	}
	if a.name < b.name {
		return -1
	}
	if a.name > b.name {
		return 1
	}
	return 0
}

// steered returns, for every class of the group with a steerable SA, its
// first such member (the others share its ranking), by priority.
func (c *Controller) steered(g *group) []*conn {
	var out []*conn
	for _, k := range g.classes {
		if k.nSteer > 0 {
			out = append(out, k.firstSteered())
		}
	}
	if !slices.IsSortedFunc(out, before) {
		slices.SortStableFunc(out, before)
	}
	return out
}

// follows reports whether a connection can be on pair p (p's remote address
// is one of its peer addresses).
func (cn *conn) follows(p Pair) bool { return cn.knows(p.Remote) }
