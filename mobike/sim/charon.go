package sim

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Charon is the fake charon: it holds IKE_SAs and moves them the way charon
// 5.9.8 with prefer_best_path = yes and kernel lookups honouring rules does.
type Charon struct {
	w  *World
	Up bool
	// PreferBestPath: charon re-checks paths on route/rule changes. Without
	// it (or fwmark/process_rules) steering does nothing.
	PreferBestPath bool

	conns  []mobike.Conn
	sas    map[uint32]*mobike.SA
	nextID uint32
	// extra are peer addresses charon learned from the peer's
	// ADDITIONAL_*_ADDRESS notifies (invisible over VICI).
	extra map[string][]netip.Addr

	roamPending bool
	roamAddress bool
	roamRoutes  bool
}

// AddConn loads a connection: its name and remote_addrs.
func (c *Charon) AddConn(name string, remote ...string) {
	k := mobike.Conn{Name: name, LocalAddrs: []string{"%any"}}
	for _, r := range remote {
		k.RemoteAddrs = append(k.RemoteAddrs, netip.MustParseAddr(r))
	}
	c.conns = append(c.conns, k)
}

// AddPeerAddr makes charon know an additional peer address of a connection
// (as from ADDITIONAL_IP4/6_ADDRESS), which VICI does not show.
func (c *Charon) AddPeerAddr(conn, addr string) {
	c.extra[conn] = append(c.extra[conn], netip.MustParseAddr(addr))
}

func (c *Charon) conn(name string) mobike.Conn {
	for _, k := range c.conns {
		if k.Name == name {
			return k
		}
	}
	panic("sim: no conn " + name)
}

// peers are the addresses charon knows for a connection's SA.
func (c *Charon) peers(sa *mobike.SA) []netip.Addr {
	ps := slices.Clone(c.conn(sa.Conn).RemoteAddrs)
	ps = append(ps, c.extra[sa.Conn]...)
	ps = append(ps, sa.Remote.Addr())
	slices.SortFunc(ps, netip.Addr.Compare)
	return slices.Compact(ps)
}

// Initiate establishes an IKE_SA of a connection on the pair the route lookup
// gives towards the first peer address that answers (initiator = true), or as
// responder when initiator is false (the peer initiated it).
func (c *Charon) Initiate(conn string, initiator bool) uint32 {
	k := c.conn(conn)
	tmp := &mobike.SA{Conn: conn, Remote: netip.AddrPortFrom(k.RemoteAddrs[0], 4500)}
	p, ok := c.firstAnswer(tmp, c.peers(tmp))
	if !ok {
		c.w.logf("charon: initiate %s failed: no path", conn)
		return 0
	}
	id := c.nextID
	c.nextID++
	sa := &mobike.SA{Conn: conn, UniqueID: id, State: mobike.IKEEstablished, Initiator: initiator,
		Local: netip.AddrPortFrom(p.Local, 4500), Remote: netip.AddrPortFrom(p.Remote, 4500)}
	c.sas[id] = sa
	c.w.logf("charon: %s#%d established on %s initiator=%t", conn, id, p, initiator)
	cp := *sa
	c.w.After(0, func() { c.w.Deliver(mobike.EvSAUp{SA: cp}) })
	return id
}

// firstAnswer probes each peer address from the source the lookup gives and
// returns the pair whose reply comes first.
func (c *Charon) firstAnswer(sa *mobike.SA, peers []netip.Addr) (mobike.Pair, bool) {
	var best mobike.Pair
	var bestRTT time.Duration
	found := false
	for _, r := range peers {
		l, ok := c.w.lookup(r)
		if !ok {
			continue
		}
		p := mobike.Pair{Local: l, Remote: r}
		if ok, rtt, _ := c.w.path(p); ok && (!found || rtt < bestRTT) {
			best, bestRTT, found = p, rtt, true
		}
	}
	return best, found
}

// Terminate deletes every SA of a connection (swanctl --terminate).
func (c *Charon) Terminate(conn string) {
	c.w.Note("charon: terminate %s", conn)
	for _, id := range c.ids() {
		if c.sas[id].Conn == conn {
			delete(c.sas, id)
			ev := mobike.EvSADown{Conn: conn, UniqueID: id}
			c.w.After(0, func() { c.w.Deliver(ev) })
		}
	}
}

// Unload removes a connection (swanctl --unload-conn); mobiked hears of it
// with the next list-conns resync, after resync.
func (c *Charon) Unload(conn string, resync time.Duration) {
	c.w.Note("charon: unload %s", conn)
	c.conns = slices.DeleteFunc(c.conns, func(k mobike.Conn) bool { return k.Name == conn })
	c.w.After(resync, func() {
		c.w.Deliver(mobike.EvConns{Conns: slices.Clone(c.conns)})
		c.w.Deliver(mobike.EvSAList{SAs: c.SAs()})
	})
}

// SAs lists the SAs as VICI's list-sas would.
func (c *Charon) SAs() []mobike.SA {
	var out []mobike.SA
	for _, id := range c.ids() {
		out = append(out, *c.sas[id])
	}
	return out
}

func (c *Charon) ids() []uint32 {
	ids := make([]uint32, 0, len(c.sas))
	for id := range c.sas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// PairOf returns the pair of a connection's SAs as "L->R" (sorted, joined by
// " " when they differ), "" when it has none.
func (c *Charon) PairOf(conn string) string {
	var ps []string
	for _, id := range c.ids() {
		if sa := c.sas[id]; sa.Conn == conn {
			ps = append(ps, mobike.Pair{Local: sa.Local.Addr(), Remote: sa.Remote.Addr()}.String())
		}
	}
	slices.Sort(ps)
	return strings.Join(slices.Compact(ps), " ")
}

func (c *Charon) scheduleRoam(address, routes bool) {
	if !c.Up {
		return
	}
	c.roamAddress = c.roamAddress || address
	c.roamRoutes = c.roamRoutes || routes
	if c.roamPending {
		return
	}
	c.roamPending = true
	c.w.After(RoamDelay, c.roam)
}

func (c *Charon) routeChanged() {
	if c.PreferBestPath {
		c.scheduleRoam(false, true)
	}
}

func (c *Charon) addressChanged() { c.scheduleRoam(true, false) }

// roam is charon's roam job: every SA is checked. After a route or rule
// change an initiator SA whose lookup no longer gives its pair moves (a
// responder only announces its addresses; its peer decides).
func (c *Charon) roam() {
	address, routes := c.roamAddress, c.roamRoutes
	c.roamPending, c.roamAddress, c.roamRoutes = false, false, false
	if !c.Up {
		return
	}
	for _, id := range c.ids() {
		sa := c.sas[id]
		cur := mobike.Pair{Local: sa.Local.Addr(), Remote: sa.Remote.Addr()}
		_, usable := c.w.localUsable(cur.Local)
		valid := usable
		checked := routes && sa.Initiator && c.PreferBestPath
		if valid && checked {
			l, ok := c.w.lookup(cur.Remote)
			valid = ok && l == cur.Local
		}
		if valid || (!address && !checked) {
			continue
		}
		p, ok := c.firstAnswer(sa, c.peers(sa))
		if !ok || p == cur {
			if !ok {
				c.w.logf("charon: %s#%d no working path, keeping %s", sa.Conn, id, cur)
			}
			continue
		}
		_, rtt, _ := c.w.path(p)
		sa.Local, sa.Remote = netip.AddrPortFrom(p.Local, 4500), netip.AddrPortFrom(p.Remote, 4500)
		c.w.logf("charon: %s#%d moves %s => %s", sa.Conn, id, cur, p)
		ev := mobike.EvIKEUpdate{Conn: sa.Conn, UniqueID: id, NewLocal: sa.Local, NewRemote: sa.Remote}
		c.w.After(rtt, func() { c.w.Deliver(ev) })
	}
}

// Restart stops charon (all SAs are gone), starts it again after down, and
// re-initiates the connections that had initiator SAs.
func (c *Charon) Restart(down time.Duration) {
	c.w.Note("charon restart")
	var again []string
	for _, id := range c.ids() {
		if sa := c.sas[id]; sa.Initiator && !slices.Contains(again, sa.Conn) {
			again = append(again, sa.Conn)
		}
	}
	clear(c.sas)
	c.Up = false
	c.w.After(0, func() { c.w.Deliver(mobike.EvCharon{Up: false}) })
	c.w.After(down, func() {
		c.Up = true
		for _, name := range again {
			c.Initiate(name, true)
		}
		c.w.Deliver(mobike.EvCharon{Up: true})
		c.w.Deliver(mobike.EvConns{Conns: slices.Clone(c.conns)})
		c.w.Deliver(mobike.EvSAList{SAs: c.SAs()})
	})
}

// Start delivers the initial state like the daemon at startup: a network
// resync, charon's connections and its SA list.
func (w *World) Start() {
	w.Note("start")
	w.Deliver(mobike.EvNetState{State: w.NetState(), Reasons: []mobike.NetReason{mobike.NetResync}})
	w.Deliver(mobike.EvConns{Conns: slices.Clone(w.Charon.conns)})
	w.Deliver(mobike.EvSAList{SAs: w.Charon.SAs()})
}

// RestartController replaces the controller with a fresh one (mobiked
// restart) and replays the startup. Kernel routes and probers' statistics are
// kept: routes survive, probers restart.
func (w *World) RestartController(o Options) {
	w.Note("mobiked restart")
	for _, p := range w.probers {
		p.gen++
	}
	clear(w.probers)
	w.Ctl = mobike.New(mobike.Config{Policy: o.Policy, Ranker: o.Ranker})
	w.Start()
}

// String renders the world's SAs like `swanctl --list-sas` in one line each.
func (c *Charon) String() string {
	var b strings.Builder
	for _, id := range c.ids() {
		sa := c.sas[id]
		fmt.Fprintf(&b, "sa %s#%d: %s <-> %s initiator=%t\n", sa.Conn, id, sa.Local.Addr(), sa.Remote.Addr(), sa.Initiator)
	}
	return b.String()
}

// Rekey replaces an IKE_SA by a new one on the same pair (ike-rekey).
func (c *Charon) Rekey(id uint32) uint32 {
	old, ok := c.sas[id]
	if !ok {
		return 0
	}
	n := *old
	n.UniqueID = c.nextID
	c.nextID++
	delete(c.sas, id)
	c.sas[n.UniqueID] = &n
	c.w.logf("charon: %s#%d rekeyed to #%d", n.Conn, id, n.UniqueID)
	c.w.After(0, func() { c.w.Deliver(mobike.EvSARekey{OldID: id, New: n}) })
	return n.UniqueID
}
