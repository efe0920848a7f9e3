package mobike

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Desired is the whole routing state the core wants in the kernel, for the
// whole host: per uplink a table with its default routes and a source rule
// per address, and per steering group the host route and peer rule of its
// pair and the prohibit rules of the group's other peer addresses. It is a
// value: the core emits it (ActRouting) whenever it changes, the steerer
// makes the kernel equal to it (level-triggered), so releasing entries,
// repairing a crash and adopting a previous run's state are one operation.
//
// Invariants (checked by TestDesiredInvariants over random inputs):
//   - no connection ever has every one of its peer addresses prohibited;
//   - a prohibited address carries no SA the state does not move: every SA
//     on a prohibited address is a steerable SA of a group whose pair is
//     elsewhere (the remote move itself).
type Desired struct {
	Uplinks []DesiredUplink // by name
	Groups  []DesiredGroup  // by Name
}

// DesiredUplink is one uplink's table and source rules.
type DesiredUplink struct {
	Name    string
	LinkIdx int
	// Local are the uplink's addresses: each gets a source rule. Only
	// families with a default route on the link are listed.
	Local []netip.Addr
	// Gateways are the next hops, at most one per family; a family with a
	// local address but no gateway gets an on-link default route.
	Gateways []netip.Addr
}

// DesiredGroup is one steering group's entries: the connections whose peer
// address sets overlap share one pair (routes steer per destination address,
// not per SA).
type DesiredGroup struct {
	Name     string   // the group's key: its first member's name
	Members  []string // connection names, sorted
	Pair     Pair     // host route Pair.Remote via Nexthop dev LinkIdx src Pair.Local
	LinkIdx  int
	Uplink   string
	Nexthop  netip.Addr   // zero: on-link
	Prohibit []netip.Addr // sorted; never every address of a member
}

// Equal reports whether d and o are the same state.
func (d Desired) Equal(o Desired) bool {
	return slices.EqualFunc(d.Uplinks, o.Uplinks, DesiredUplink.equal) && slices.EqualFunc(d.Groups, o.Groups, DesiredGroup.equal)
}

func (a DesiredUplink) equal(b DesiredUplink) bool {
	return a.Name == b.Name && a.LinkIdx == b.LinkIdx && slices.Equal(a.Local, b.Local) && slices.Equal(a.Gateways, b.Gateways)
}

func (a DesiredGroup) equal(b DesiredGroup) bool {
	return a.Name == b.Name && a.Pair == b.Pair && a.LinkIdx == b.LinkIdx && a.Uplink == b.Uplink &&
		a.Nexthop == b.Nexthop && slices.Equal(a.Members, b.Members) && slices.Equal(a.Prohibit, b.Prohibit)
}

// Lines renders the state one entry per line, in a stable order (golden
// files, logs, mobikectl).
func (d Desired) Lines() []string {
	var out []string
	for _, u := range d.Uplinks {
		var b strings.Builder
		b.WriteString("uplink " + u.Name + " dev " + strconv.Itoa(u.LinkIdx) + " local")
		for _, a := range u.Local {
			b.WriteString(" " + a.String())
		}
		if len(u.Gateways) > 0 {
			b.WriteString(" via")
			for _, g := range u.Gateways {
				b.WriteString(" " + g.String())
			}
		}
		out = append(out, b.String())
	}
	for _, g := range d.Groups {
		var b strings.Builder
		b.WriteString("group " + g.Name + " [" + strings.Join(g.Members, " ") + "] pair " + g.Pair.String() +
			" dev " + g.Uplink + "(" + strconv.Itoa(g.LinkIdx) + ")")
		if g.Nexthop.IsValid() {
			b.WriteString(" via " + g.Nexthop.String())
		} else {
			b.WriteString(" on-link")
		}
		if len(g.Prohibit) > 0 {
			b.WriteString(" prohibit")
			for _, a := range g.Prohibit {
				b.WriteString(" " + a.String())
			}
		}
		out = append(out, b.String())
	}
	return out
}

// String renders Lines joined by newlines.
func (d Desired) String() string { return strings.Join(d.Lines(), "\n") }

// Prohibited returns every prohibited address, sorted.
func (d Desired) Prohibited() []netip.Addr {
	var out []netip.Addr
	for _, g := range d.Groups {
		out = append(out, g.Prohibit...)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func (d Desired) clone() Desired {
	o := Desired{Uplinks: slices.Clone(d.Uplinks), Groups: slices.Clone(d.Groups)}
	for i := range o.Uplinks {
		o.Uplinks[i].Local = slices.Clone(o.Uplinks[i].Local)
		o.Uplinks[i].Gateways = slices.Clone(o.Uplinks[i].Gateways)
	}
	for i := range o.Groups {
		o.Groups[i].Members = slices.Clone(o.Groups[i].Members)
		o.Groups[i].Prohibit = slices.Clone(o.Groups[i].Prohibit)
	}
	return o
}

// ActRouting asks the steerer to make the kernel equal to State. Gen grows
// with every state the core emits; the steerer reports the generation it
// applied (EvRoutingApplied). The first ActRouting after a start comes once
// the SA list is known, and replaces whatever a previous run left.
type ActRouting struct {
	Gen   uint64
	State Desired
}

// EvRoutingApplied reports that the steerer made the kernel equal to the
// state of generation Gen (later states supersede earlier ones that were
// never applied). Failed names the groups whose entries could not be
// installed; Err says why.
type EvRoutingApplied struct {
	Gen    uint64
	Failed []string
	Err    error
}

func (ActRouting) isAction()      {}
func (EvRoutingApplied) isEvent() {}

// CheckInvariants returns an error when d breaks the routing state's
// invariants for st (the Snapshot of the controller that computed it):
// every member of a group in one group only, no group on a prohibited
// address, no live connection with every peer address prohibited, no SA on a
// prohibited address unless it is a steerable SA the state moves off it.
func CheckInvariants(d Desired, st State) error {
	prohibited := map[netip.Addr]bool{}
	for _, a := range d.Prohibited() {
		prohibited[a] = true
	}
	groupOf := map[string]DesiredGroup{}
	for _, g := range d.Groups {
		for _, m := range g.Members {
			if _, dup := groupOf[m]; dup {
				return fmt.Errorf("connection %s is in two groups", m)
			}
			groupOf[m] = g
		}
		if prohibited[g.Pair.Remote] {
			return fmt.Errorf("group %s is on %s, which is prohibited", g.Name, g.Pair)
		}
	}
	for _, cv := range st.Conns {
		if cv.Group == "" || len(cv.Peers) == 0 {
			continue
		}
		if !slices.ContainsFunc(cv.Peers, func(a netip.Addr) bool { return !prohibited[a] }) {
			return fmt.Errorf("every peer address of %s (%v) is prohibited", cv.Name, cv.Peers)
		}
	}
	for _, sa := range st.SAs {
		r := sa.Pair.Remote
		if !prohibited[r] {
			continue
		}
		g, ok := groupOf[sa.Conn]
		if !steerable(sa.SA) || !ok || g.Pair.Remote == r {
			return fmt.Errorf("SA %s#%d (initiator=%t, %s) is on prohibited %s and the state does not move it",
				sa.Conn, sa.UniqueID, sa.Initiator, sa.State, r)
		}
	}
	return nil
}

// ---- computing the state ----

// uplinksFor derives the uplink tables from the network state: links that
// are up and not excluded, with the available addresses of each family that
// has a default route on that link (a gateway, or a point-to-point default
// without one). A link that is down, or a family without a default route
// (e.g. right after a link comes back, before its gateway is restored), gets
// no table and no source rule: an on-link default there would black-hole the
// probes and charon's packets from that address.
func (c *Controller) uplinksFor() []DesiredUplink {
	var ups []DesiredUplink
	for _, l := range c.net.Links {
		if !l.Up || c.uplinks[l.Index].Exclude {
			continue
		}
		u := DesiredUplink{Name: l.Name, LinkIdx: l.Index}
		fam := map[bool]bool{} // is4 -> has a default route
		p2p := false
		for _, g := range c.net.Gateways {
			if g.LinkIdx != l.Index {
				continue
			}
			if !g.Via.IsValid() {
				p2p = true
				continue
			}
			v := g.Via.Unmap()
			if !fam[v.Is4()] {
				fam[v.Is4()] = true
				u.Gateways = append(u.Gateways, v)
			}
		}
		for _, a := range c.net.Addrs {
			ip := a.Prefix.Addr().Unmap()
			if a.LinkIdx == l.Index && Available(a) && (p2p || fam[ip.Is4()]) {
				u.Local = append(u.Local, ip)
			}
		}
		if len(u.Local) == 0 {
			continue
		}
		slices.SortFunc(u.Local, netip.Addr.Compare)
		u.Local = slices.Compact(u.Local)
		slices.SortFunc(u.Gateways, netip.Addr.Compare)
		ups = append(ups, u)
	}
	slices.SortFunc(ups, func(a, b DesiredUplink) int { return strings.Compare(a.Name, b.Name) })
	return ups
}

// refreshDesired computes again the routing entries that may have changed:
// a group's when its pair, members, peer addresses or SAs changed, every
// one when the network did (netGen). It sets desiredStale when one differs.
func (c *Controller) refreshDesired() {
	if c.uplinksAt != c.netGen || c.uplinksAt == 0 {
		ups := c.uplinksFor()
		if !slices.EqualFunc(ups, c.uplinks0, DesiredUplink.equal) || c.uplinksAt == 0 {
			c.desiredStale = true
		}
		c.uplinks0, c.uplinksAt = ups, c.netGen
	}
	for _, g := range c.groups {
		if g.dgOK && g.dgNet == c.netGen {
			continue
		}
		dg, has := c.desiredGroup(g)
		if has != g.dgHas || (has && !dg.equal(g.dg)) {
			c.desiredStale = true
		}
		g.dg, g.dgHas = dg, has
		g.dgOK, g.dgNet = true, c.netGen
	}
}

// computeDesired builds the routing state from the uplinks and the groups'
// entries (refreshDesired first).
func (c *Controller) computeDesired() Desired {
	d := Desired{Uplinks: c.uplinks0, Groups: make([]DesiredGroup, 0, len(c.groups))}
	for _, g := range c.groups {
		if g.dgHas {
			d.Groups = append(d.Groups, g.dg)
		}
	}
	return d
}

// desiredGroup is one group's entries; ok is false when the group has no
// pair to be on or its pair cannot be routed (its local address is gone).
func (c *Controller) desiredGroup(g *group) (DesiredGroup, bool) {
	p := g.pair
	if !p.Local.IsValid() || !p.Remote.IsValid() || p.Local.Is4() != p.Remote.Is4() {
		return DesiredGroup{}, false
	}
	link, ok := c.localLink(p.Local)
	if !ok {
		return DesiredGroup{}, false
	}
	dg := DesiredGroup{Name: g.key, Members: g.names, Pair: p, LinkIdx: link, Uplink: c.links[link].Name, Nexthop: c.nexthop(link, p.Remote.Is4())}
	for _, a := range g.peers {
		if a != p.Remote && c.mayProhibit(g, a, p.Remote) {
			dg.Prohibit = append(dg.Prohibit, a)
		}
	}
	return dg, true
}

// localLink returns the link of a locally operational address.
func (c *Controller) localLink(a netip.Addr) (int, bool) {
	i, ok := slices.BinarySearchFunc(c.locals, a, func(l localAddr, a netip.Addr) int { return l.addr.Compare(a) })
	if !ok {
		return 0, false
	}
	return c.locals[i].linkIdx, true
}

// mayProhibit reports whether the group on remote r may prohibit peer
// address a: every member that has a also has r (so no member loses all its
// addresses), and no SA that the state does not move is on a (responder SAs,
// SAs not established, SAs of a member that cannot follow to r).
// The members of a class share their peer addresses, and an SA's peer
// address is one of its connection's, so both are answered per class.
func (c *Controller) mayProhibit(g *group, a, r netip.Addr) bool {
	for _, k := range g.classes {
		if m := k.members[0]; m.knows(a) && !m.knows(r) {
			return false
		}
	}
	for _, k := range g.classes {
		if k.fixed[a] > 0 {
			return false
		}
	}
	return true
}

// updateRouting emits the desired state when it changed (and the core is
// ready: it has seen the network and charon's SA list since charon came up).
func (c *Controller) updateRouting() {
	if !c.routingDirt {
		return
	}
	c.routingDirt = false
	if !c.ready() {
		return
	}
	c.refreshDesired()
	if c.gen > 0 && !c.desiredStale {
		c.stampPending() // no entry changed since the state was emitted
		return
	}
	c.desiredStale = false
	d := c.computeDesired()
	if c.gen > 0 && d.Equal(c.desired) {
		c.stampPending()
		return
	}
	c.gen++
	c.desired = d
	c.routingAct = &ActRouting{Gen: c.gen, State: d.clone()}
	c.stampPending()
}

// stampPending records in which generation each new steer was emitted (a
// kernel error reported for that generation or a later one fails it).
func (c *Controller) stampPending() {
	for _, g := range c.groups {
		if g.pending != nil && g.pending.gen == 0 {
			g.pending.gen = c.gen
		}
	}
}

func (c *Controller) ready() bool { return c.netSeen && c.saListSeen && c.charonUp }

// Desired returns the routing state last emitted (zero before the first).
func (c *Controller) Desired() (Desired, uint64) { return c.desired.clone(), c.gen }
