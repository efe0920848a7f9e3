package mobike

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// verifyIndexes recomputes from scratch everything the core maintains
// incrementally (peer addresses, the connections of each address, SA
// counters, the pair set, steering groups and their classes) and returns an
// error when an index differs. Tests call it after every Step.
func verifyIndexes(c *Controller) error {
	if c.pairsDirt || c.groupsDirt || len(c.dirtyRemotes) > 0 {
		return fmt.Errorf("dirty after Step: pairs %t groups %t remotes %d", c.pairsDirt, c.groupsDirt, len(c.dirtyRemotes))
	}
	// Peer addresses and the connections of each.
	remotes := map[netip.Addr][]*conn{}
	for _, cn := range c.connList {
		var ps []netip.Addr
		for _, set := range [][]netip.Addr{cn.remoteAddrs, cn.pol.ExtraPeers} {
			for _, a := range set {
				if a = a.Unmap(); validPeer(a) {
					ps = append(ps, a)
				}
			}
		}
		ps = slices.AppendSeq(ps, maps.Keys(cn.learned))
		slices.SortFunc(ps, netip.Addr.Compare)
		ps = slices.Compact(ps)
		if !slices.Equal(ps, cn.peers) {
			return fmt.Errorf("conn %s: peers %v, want %v", cn.name, cn.peers, ps)
		}
		for _, a := range ps {
			remotes[a] = append(remotes[a], cn)
		}
	}
	if !maps.EqualFunc(remotes, c.remotes, slices.Equal) {
		return fmt.Errorf("remotes differ:\n got %v\nwant %v", c.remotes, remotes)
	}
	// SA counters.
	saOn := map[Pair]int{}
	nInit, nSteer := map[*conn]int{}, map[*conn]int{}
	for _, s := range c.sas {
		saOn[s.pair]++
		cn := c.conns[s.sa.Conn]
		if s.sa.Initiator {
			nInit[cn]++
		}
		if steerable(s.sa) {
			nSteer[cn]++
		}
	}
	if !maps.Equal(saOn, c.saOn) {
		return fmt.Errorf("saOn %v, want %v", c.saOn, saOn)
	}
	for _, cn := range c.connList {
		if cn.nInit != nInit[cn] || cn.nSteer != nSteer[cn] {
			return fmt.Errorf("conn %s: %d initiator, %d steerable SAs; want %d, %d", cn.name, cn.nInit, cn.nSteer, nInit[cn], nSteer[cn])
		}
	}
	// The pair set.
	want := map[Pair]bool{}
	for r, cs := range remotes {
		monitorOnly := true
		for _, cn := range cs {
			if len(cn.sas) == 0 || nInit[cn] > 0 {
				monitorOnly = false
			}
		}
		for _, l := range c.locals {
			k := Pair{Local: l.addr, Remote: r}
			if l.addr.Is4() == r.Is4() && (!monitorOnly || saOn[k] > 0) {
				want[k] = true
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(want), comparePair)
	if !slices.Equal(keys, c.pairKeys) || len(c.pairs) != len(keys) {
		return fmt.Errorf("pairs %v (%d), want %v", c.pairKeys, len(c.pairs), keys)
	}
	byRemote := map[netip.Addr][]Pair{}
	for _, k := range keys {
		byRemote[k.Remote] = append(byRemote[k.Remote], k)
	}
	if len(byRemote) != len(c.byRemote) {
		return fmt.Errorf("byRemote has %d addresses, want %d", len(c.byRemote), len(byRemote))
	}
	for r, ks := range byRemote {
		ps := c.byRemote[r]
		if len(ps) != len(ks) {
			return fmt.Errorf("byRemote[%s]: %d pairs, want %d", r, len(ps), len(ks))
		}
		for i, p := range ps {
			if p != c.pairs[ks[i]] {
				return fmt.Errorf("byRemote[%s][%d] is %s, want %s", r, i, p.p, ks[i])
			}
		}
	}
	// Steering groups: the connected components of the live connections.
	var live []*conn
	for _, cn := range c.connList {
		if cn.live() {
			live = append(live, cn)
		} else if cn.group != nil || cn.class != nil {
			return fmt.Errorf("conn %s is not live but in a group", cn.name)
		}
	}
	seen := map[*conn]bool{}
	var comps [][]*conn
	for _, cn := range live {
		if seen[cn] {
			continue
		}
		comp, queue := []*conn{}, []*conn{cn}
		seen[cn] = true
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			comp = append(comp, x)
			for _, a := range x.peers {
				for _, y := range remotes[a] {
					if y.live() && !seen[y] {
						seen[y] = true
						queue = append(queue, y)
					}
				}
			}
		}
		slices.SortFunc(comp, func(a, b *conn) int { return before(a, b) })
		comps = append(comps, comp)
	}
	if len(comps) != len(c.groups) {
		return fmt.Errorf("%d groups, want %d", len(c.groups), len(comps))
	}
	groupOf := map[netip.Addr]*group{}
	for i, g := range c.groups {
		if g.idx != i || c.groupByKey[g.key] != g {
			return fmt.Errorf("group %s: idx %d at %d", g.name, g.idx, i)
		}
		var names []string
		var peers []netip.Addr
		for _, m := range g.members {
			if m.group != g {
				return fmt.Errorf("member %s of %s points to another group", m.name, g.name)
			}
			names = append(names, m.name)
			peers = append(peers, m.peers...)
			if !slices.Contains(g.classes, m.class) || !slices.Contains(m.class.members, m) {
				return fmt.Errorf("member %s of %s: class not in the group", m.name, g.name)
			}
		}
		slices.SortFunc(peers, netip.Addr.Compare)
		peers = slices.Compact(peers)
		if !slices.Equal(peers, g.peers) || !slices.Equal(names, g.names) {
			return fmt.Errorf("group %s: peers %v names %v; want %v %v", g.name, g.peers, g.names, peers, names)
		}
		for _, a := range peers {
			groupOf[a] = g
		}
		var comp []*conn
		for _, cs := range comps {
			if slices.Contains(cs, g.members[0]) {
				comp = cs
			}
		}
		byName := slices.Clone(comp)
		slices.SortFunc(byName, func(a, b *conn) int { return compareName(a, b) })
		if !slices.Equal(byName, g.members) {
			return fmt.Errorf("group %s has %d members, want %d", g.name, len(g.members), len(comp))
		}
		if g.dirty && !slices.Contains(c.dirtyGroups, g) {
			return fmt.Errorf("group %s is dirty but not listed", g.name)
		}
		if err := verifyClasses(c, g); err != nil {
			return err
		}
	}
	if !maps.Equal(groupOf, c.groupOf) {
		return fmt.Errorf("groupOf has %d addresses, want %d", len(c.groupOf), len(groupOf))
	}
	// Probers: the active set and every pair's prober parameters.
	if !c.activeOK || len(c.probeDirty) > 0 {
		return fmt.Errorf("probers not brought up to date (activeOK %t, %d dirty)", c.activeOK, len(c.probeDirty))
	}
	active := map[Pair]bool{}
	for k := range saOn {
		active[k] = true
	}
	for _, g := range c.groups {
		if g.pending != nil {
			active[g.pending.to] = true
		}
	}
	if !maps.Equal(active, c.active) {
		return fmt.Errorf("active pairs %v, want %v", c.active, active)
	}
	for _, k := range c.pairKeys {
		if p := c.pairs[k]; p.started != c.wantStart(p) {
			return fmt.Errorf("pair %s probed with %+v, want %+v", k, p.started, c.wantStart(p))
		}
	}
	// The routing state in force is the one computed from scratch.
	if c.ready() && c.gen > 0 {
		fresh := Desired{Uplinks: c.uplinksFor()}
		for _, g := range c.groups {
			if dg, ok := c.desiredGroup(g); ok {
				fresh.Groups = append(fresh.Groups, dg)
			}
		}
		if !fresh.Equal(c.desired) {
			return fmt.Errorf("routing state in force:\n%s\nwant:\n%s", c.desired, fresh)
		}
	}
	// Cached routing entries.
	for _, g := range c.groups {
		if !g.dgOK || g.dgNet != c.netGen {
			continue
		}
		dg, has := c.desiredGroup(g)
		if has != g.dgHas || (has && !(Desired{Groups: []DesiredGroup{dg}}).Equal(Desired{Groups: []DesiredGroup{g.dg}})) {
			return fmt.Errorf("group %s: cached routing entry %+v, want %+v", g.name, g.dg, dg)
		}
	}
	return nil
}

func compareName(a, b *conn) int {
	switch {
	case a.name < b.name:
		return -1
	case a.name > b.name:
		return 1
	}
	return 0
}

// verifyClasses checks that the members of each class have equal ranking
// inputs and that the class's counters are those of its members' SAs.
func verifyClasses(c *Controller, g *group) error {
	n := 0
	for _, k := range g.classes {
		n += len(k.members)
		m0 := k.members[0]
		on, fixed := map[Pair]int{}, map[netip.Addr]int{}
		steered := 0
		var first *conn
		for i, m := range k.members {
			if m.class != k {
				return fmt.Errorf("class of %s: member %s points elsewhere", m0.name, m.name)
			}
			if i > 0 && (m.polKey != m0.polKey || m.prefer != "" || m0.prefer != "" || !slices.Equal(m.peers, m0.peers) || before(k.members[i-1], m) >= 0) {
				return fmt.Errorf("class of %s: member %s has other ranking inputs or is out of order", m0.name, m.name)
			}
			if m.nSteer > 0 {
				steered++
				if first == nil {
					first = m
				}
			}
			for _, id := range m.sas {
				if s := c.sas[id]; steerable(s.sa) {
					on[s.pair]++
				} else {
					fixed[s.pair.Remote]++
				}
			}
		}
		if k.nSteer != steered || !maps.Equal(on, k.on) || !maps.Equal(fixed, k.fixed) {
			return fmt.Errorf("class of %s: %d steered on %v fixed %v; want %d %v %v", m0.name, k.nSteer, k.on, k.fixed, steered, on, fixed)
		}
		if !k.stale && k.first != first {
			return fmt.Errorf("class of %s: first steered member wrong", m0.name)
		}
	}
	if n != len(g.members) {
		return fmt.Errorf("group %s: classes hold %d members, want %d", g.name, n, len(g.members))
	}
	return nil
}
