package mobike

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// Config configures a Controller.
//
// The daemon builds Policy from the YAML config (policy/config*.go) or leaves
// it zero for zero-config operation (uplinks ranked ethernet > wlan > wwan,
// wwan metered; every connection gets the defaults in policy/types.go). A new
// policy is applied at runtime with EvConfig.
type Config struct {
	// Policy is the ranking and decision policy; zero fields are defaults.
	Policy policy.Settings
	// Ranker orders candidate pairs; nil means policy.DefaultRanker{}.
	Ranker policy.Ranker
	// TraceLimit bounds the observations buffered between TakeTrace calls
	// (oldest are dropped first); 0 means DefaultTraceLimit.
	TraceLimit int
}

// DefaultTraceLimit is Config.TraceLimit's default: enough for one resync of a
// few thousand SAs between two TakeTrace calls.
const DefaultTraceLimit = 1 << 14

// Controller is the decision engine: it tracks the host's uplinks and
// addresses, the peer addresses of every connection, the candidate pairs and
// their path state, and charon's SAs, and decides where each connection's SAs
// should be. It is not safe for concurrent use: one goroutine (the runloop)
// owns it and calls, in a loop:
//
//	acts := c.Step(now, ev)   // ev from an adapter, or EvTimer when now >= c.NextDeadline()
//	obs := c.TakeTrace()      // the decision trace of that Step
//	execute(acts)             // probes, steering, alerts
//
// Step never blocks, reads the clock, or does I/O; equal inputs give equal
// outputs.
type Controller struct {
	pol        policy.Settings
	ranker     policy.Ranker
	traceLimit int
	now        time.Time

	net     NetState
	links   map[int]Link
	uplinks map[int]policy.UplinkPolicy // by link index
	// localWhy says why an address of the host is not locally operational
	// ("" = it is); addresses not in it are not assigned.
	localWhy map[netip.Addr]PathReason
	locals   []localAddr // locally operational, sorted by address

	// arm is the planned ActArmRoam, lastArm when the core last emitted
	// one (roamarm.go).
	arm     *armPlan
	lastArm time.Time

	pairs    map[Pair]*pair
	pairKeys []Pair                 // sorted
	byRemote map[netip.Addr][]*pair // by local address
	stopped  []Pair                 // removed in this Step, ActProbeStop pending
	active   map[Pair]bool          // pairs an SA is on or a steer targets
	activeOK bool                   // active is up to date
	// probeDirty are pairs whose prober parameters may have changed (an SA
	// came or left, the connections of the peer address changed); all are
	// looked at when !activeOK.
	probeDirty map[Pair]bool
	remotes    map[netip.Addr][]*conn // the connections of a peer address, by name
	slas       []policy.SLA           // distinct connection SLAs (for pair signatures)
	saOn       map[Pair]int           // SAs on each pair (no zero entries)
	// The pair set is recomputed per peer address: those in dirtyRemotes,
	// or all when allPairs (the local addresses or the policy changed).
	pairsDirt    bool
	allPairs     bool
	dirtyRemotes map[netip.Addr]bool

	conns    map[string]*conn
	connList []*conn // sorted by name
	sas      map[uint32]*saState
	charonUp bool

	groups     []*group // steering groups, by key
	groupByKey map[string]*group
	groupOf    map[netip.Addr]*group // the group of each live peer address (groups are disjoint)
	groupsDirt bool                  // group membership must be recomputed
	// Groups to evaluate in this Step: dirtyGroups (each with dirty set),
	// or every group when allDirty.
	dirtyGroups []*group
	allDirty    bool

	// The routing state: recomputed when routingDirt, emitted (ActRouting)
	// when it differs from desired and the core is ready (netSeen and
	// saListSeen since charon came up).
	routingDirt bool
	netSeen     bool
	saListSeen  bool
	gen         uint64
	desired     Desired
	routingAct  *ActRouting // emitted by this Step
	// netGen counts network and policy changes: a group's cached routing
	// entry (group.dg) and the uplink tables are valid for one netGen.
	netGen    uint64
	uplinks0  []DesiredUplink
	uplinksAt uint64 // netGen of uplinks0 (0: none)
	// desiredStale: an entry changed since desired was last compared.
	desiredStale bool

	// watched: the SA of each group whose traffic counters are read
	// (traffic.go); watchList the last ActTrafficWatch.
	watched    map[SARef]*group
	watchList  []SARef
	watchConns map[string]bool // connections whose SAs changed: their group's watch is recomputed
	watchAll   bool            // the groups changed: every group's is

	rankCache map[rankKey]*rankResult
	candBuf   []policy.Candidate // rank's scratch
	anyDirty  bool               // some group is dirty
	decided   bool               // decide ran: recompute the deadline
	acts      []Action
	trace     []Observation
	deadline  time.Time
}

type localAddr struct {
	addr       netip.Addr
	linkIdx    int
	deprecated bool
}

type saState struct {
	sa   SA
	pair Pair
	// visited are the remote addresses this SA has been on: each is a
	// learned peer address of its connection until the SA goes away.
	visited []netip.Addr
}

// conn is one charon connection and its SAs. Connections whose peer address
// sets overlap form a steering group (group.go), which decides for all of
// them.
type conn struct {
	name     string
	pol      policy.ConnPolicy
	explicit bool   // pol comes from Settings.Conns (not the default)
	polKey   string // pol without its name: equal keys, equal rankings
	order    int    // place in Settings.Conns (unlisted: after all listed)

	remoteAddrs []netip.Addr // charon's remote_addrs (EvConns)
	// learned are the remote addresses SAs of the connection are or have
	// been on, each with those SAs' IDs: an address is dropped with its
	// last SA (bounded memory on responders with road-warrior clients).
	learned map[netip.Addr][]uint32
	// peers is the sorted union of remoteAddrs, pol.ExtraPeers and
	// learned; a new slice whenever it changes (never modified in place).
	peers  []netip.Addr
	sas    []uint32 // sorted
	nInit  int      // SAs of which we are the original initiator
	nSteer int      // steerable SAs (steerable)

	group       *group // nil when not live (not loaded in charon, no SA)
	class       *class // the members of its group that share its ranking
	conflict    string // why the group's pair breaks this connection's policy ("" = it does not)
	natExcluded map[Pair]bool

	prefer      string
	preferUntil time.Time
}

// live reports whether the connection takes part in steering: charon has it
// loaded with remote addresses, or it has SAs.
func (cn *conn) live() bool { return len(cn.remoteAddrs) > 0 || len(cn.sas) > 0 }

type pendingSteer struct {
	from     []Pair // the pairs the group's steerable SAs were on
	to       Pair
	peers    []netip.Addr // the group's peer addresses at the steer
	at       time.Time
	deadline time.Time
	cause    SteerCause
	gen      uint64 // routing generation that carried it (0: not yet emitted)
	onTarget int    // steerable SAs on the target at the last deadline (progress)
}

type holdKey struct {
	pair  Pair
	until time.Time
}

// rankKey identifies a ranking: the class of the connections that share it
// (nil for a connection in no group: then the connection itself) and the
// current pair.
type rankKey struct {
	cls *class
	cn  *conn
	cur Pair
}

// New returns a Controller with no state: it learns links and addresses from
// EvNetState, connections from EvConns, SAs from EvSAList/EvSAUp, and adopts
// the pair an SA is on (a restart of mobiked causes no move).
func New(cfg Config) *Controller {
	c := &Controller{
		ranker:     cfg.Ranker,
		traceLimit: cfg.TraceLimit,
		links:      map[int]Link{},
		uplinks:    map[int]policy.UplinkPolicy{},
		localWhy:   map[netip.Addr]PathReason{},
		pairs:      map[Pair]*pair{},
		byRemote:   map[netip.Addr][]*pair{},
		remotes:    map[netip.Addr][]*conn{},
		saOn:       map[Pair]int{},
		probeDirty: map[Pair]bool{},
		conns:      map[string]*conn{},
		sas:        map[uint32]*saState{},
		groupByKey: map[string]*group{},
		groupOf:    map[netip.Addr]*group{},

		dirtyRemotes: map[netip.Addr]bool{},
		charonUp:     true,
	}
	if c.ranker == nil {
		c.ranker = policy.DefaultRanker{}
	}
	if c.traceLimit <= 0 {
		c.traceLimit = DefaultTraceLimit
	}
	c.setPolicy(cfg.Policy)
	return c
}

// NextDeadline returns when the Controller next needs an EvTimer (a steer
// confirmation timeout, a hold-down or backoff expiry, the move budget window,
// an operator override's end), or the zero time when nothing is pending.
func (c *Controller) NextDeadline() time.Time { return c.deadline }

// TakeTrace returns the observations recorded since the last call and clears
// the buffer. The runloop calls it after every Step.
func (c *Controller) TakeTrace() []Observation {
	t := c.trace
	c.trace = nil
	return t
}

func (c *Controller) observe(o Observation) {
	if len(c.trace) >= c.traceLimit {
		n := copy(c.trace, c.trace[len(c.trace)-c.traceLimit/2:])
		c.trace = c.trace[:n]
	}
	c.trace = append(c.trace, o)
}

// Step feeds one event at time now and returns the actions to execute, in a
// deterministic order: probe stops, probe starts (both by pair), then steers
// and alerts by connection name.
func (c *Controller) Step(now time.Time, ev Event) []Action {
	c.now = now
	c.acts = nil
	switch ev := ev.(type) {
	case EvNetState:
		c.onNetState(ev.State)
	case EvProbeResult:
		c.onProbe(ev)
	case EvSAList:
		c.onSAList(ev.SAs)
	case EvSAUp:
		c.upsertSA(ev.SA)
	case EvSADown:
		c.removeSA(ev.UniqueID)
	case EvIKEUpdate:
		c.onIKEUpdate(ev)
	case EvSARekey:
		c.removeSA(ev.OldID)
		c.upsertSA(ev.New)
	case EvCharon:
		c.onCharon(ev.Up)
	case EvConns:
		c.onConns(ev.Conns)
	case EvRoutingApplied:
		c.onRoutingApplied(ev)
	case EvConfig:
		c.setPolicy(ev.Policy)
		c.observe(ConfigApplied{})
	case EvPrefer:
		c.onPrefer(ev)
	case EvTraffic:
		c.onTraffic(ev)
	case EvTimer:
		// Deadlines are checked below for every event.
	}
	if c.pairsDirt {
		c.syncPairs()
	}
	if c.groupsDirt {
		c.syncGroups()
	}
	c.decide()
	c.updateRouting()
	return c.flush()
}

// ---- policy ----

func (c *Controller) setPolicy(s policy.Settings) {
	c.pol = s.WithDefaults()
	for _, l := range c.links {
		c.uplinks[l.Index] = c.pol.Uplink(l.Name, policy.Kind(l.Kind))
	}
	for _, cn := range c.connList {
		c.applyConnPolicy(cn)
	}
	c.rebuildSLAs()
	c.recomputeLocals()
	c.rebuildRemotes()
	c.markAllDirty()
}

func (c *Controller) applyConnPolicy(cn *conn) {
	cn.pol = c.pol.Conn(cn.name)
	cn.order = slices.IndexFunc(c.pol.Conns, func(p policy.ConnPolicy) bool { return p.Name == cn.name })
	cn.explicit = cn.order >= 0
	if !cn.explicit {
		cn.order = len(c.pol.Conns)
	}
	p := cn.pol
	p.Name = ""
	cn.polKey = fmt.Sprintf("%#v", p)
	c.recomputePeers(cn)
}

func (c *Controller) rebuildSLAs() {
	c.slas = c.slas[:0]
	add := func(s policy.SLA) {
		if !slices.Contains(c.slas, s) && len(c.slas) < 64 {
			c.slas = append(c.slas, s)
		}
	}
	add(c.pol.Default.SLA)
	for _, p := range c.pol.Conns {
		add(p.SLA)
	}
	for _, p := range c.pairs {
		p.slaMask = c.slaMask(p)
	}
}

// slaMask returns which of the distinct SLAs p meets: [0] as a candidate,
// [1] as a connection's current pair (with policy.SLAHysteresis). A change
// of either re-evaluates the pair's group.
func (c *Controller) slaMask(p *pair) [2]uint64 {
	var m [2]uint64
	for i, s := range c.slas {
		if s.Met(p.stats.LossRatio, p.rtt()) {
			m[0] |= 1 << i
		}
		if s.MetCurrent(p.stats.LossRatio, p.rtt()) {
			m[1] |= 1 << i
		}
	}
	return m
}

// markDirty asks for the connection's group to be evaluated in this Step
// (groups rebuilt in this Step are evaluated anyway).
func (c *Controller) markDirty(cn *conn) {
	if cn.group != nil {
		c.markGroup(cn.group)
	}
	c.anyDirty = true
}

// markGroup asks for g to be evaluated in this Step (or, when it is being
// evaluated, in the next one).
func (c *Controller) markGroup(g *group) {
	if !g.dirty {
		g.dirty = true
		c.dirtyGroups = append(c.dirtyGroups, g)
	}
	c.anyDirty = true
}

func (c *Controller) markAllDirty() {
	c.allDirty = true
	c.anyDirty = true
	c.activeOK = false
	c.routingDirt = true
}

// dirtyRemote asks for the pairs of peer address a to be recomputed.
func (c *Controller) dirtyRemote(a netip.Addr) {
	c.dirtyRemotes[a] = true
	c.pairsDirt = true
}

// ---- connections and peers ----

func (c *Controller) conn(name string) *conn {
	if cn, ok := c.conns[name]; ok {
		return cn
	}
	cn := &conn{name: name, natExcluded: map[Pair]bool{}, learned: map[netip.Addr][]uint32{}}
	c.anyDirty = true
	c.conns[name] = cn
	i, _ := slices.BinarySearchFunc(c.connList, name, func(x *conn, n string) int { return strings.Compare(x.name, n) })
	c.connList = slices.Insert(c.connList, i, cn)
	c.applyConnPolicy(cn)
	return cn
}

// gcConn forgets a connection nobody refers to any more.
func (c *Controller) gcConn(cn *conn) {
	if cn.live() || cn.explicit || cn.prefer != "" {
		return
	}
	delete(c.conns, cn.name)
	c.connList = slices.DeleteFunc(c.connList, func(x *conn) bool { return x == cn })
	old := cn.peers
	cn.peers = nil
	c.peersChanged(cn, old)
}

// recomputePeers recomputes cn's peer addresses and reports whether they
// changed.
func (c *Controller) recomputePeers(cn *conn) bool {
	ps := make([]netip.Addr, 0, len(cn.remoteAddrs)+len(cn.pol.ExtraPeers)+len(cn.learned))
	for _, set := range [][]netip.Addr{cn.remoteAddrs, cn.pol.ExtraPeers} {
		for _, a := range set {
			a = a.Unmap()
			if validPeer(a) {
				ps = append(ps, a)
			}
		}
	}
	for a := range cn.learned {
		ps = append(ps, a)
	}
	slices.SortFunc(ps, netip.Addr.Compare)
	ps = slices.Compact(ps)
	if slices.Equal(ps, cn.peers) {
		return false
	}
	old := cn.peers
	cn.peers = ps
	c.peersChanged(cn, old)
	return true
}

// peersChanged updates what depends on cn's peer addresses after they
// changed from old: the connections of each address, the pairs of the
// addresses that came or went, and cn's steering group (in place when no
// group merges or splits; otherwise groupsDirt).
func (c *Controller) peersChanged(cn *conn, old []netip.Addr) {
	added, removed := diffSorted(old, cn.peers)
	for _, a := range removed {
		cs := slices.DeleteFunc(c.remotes[a], func(x *conn) bool { return x == cn })
		if len(cs) == 0 {
			delete(c.remotes, a)
		} else {
			c.remotes[a] = cs
		}
		c.dirtyRemote(a)
	}
	for _, a := range added {
		cs := c.remotes[a]
		i, _ := slices.BinarySearchFunc(cs, cn.name, func(x *conn, n string) int { return strings.Compare(x.name, n) })
		c.remotes[a] = slices.Insert(cs, i, cn)
		c.dirtyRemote(a) // and its pairs' probe method (their first connection's)
	}
	c.markDirty(cn)
	g := cn.group
	if g == nil || !cn.live() {
		if g != nil || cn.live() {
			c.groupsDirt = true
		}
		return
	}
	if len(removed) > 0 && len(g.members) > 1 {
		c.groupsDirt = true // the group may split
		return
	}
	for _, a := range added {
		for _, o := range c.remotes[a] {
			if o != cn && o.live() && o.group != g {
				c.groupsDirt = true // groups merge
				return
			}
		}
	}
	g.dgOK = false
	if len(g.members) == 1 {
		g.peers = cn.peers
	} else {
		g.peers = mergeSorted(g.peers, added)
		c.buildClasses(g) // cn's ranking inputs changed
	}
	for _, a := range removed {
		delete(c.groupOf, a)
	}
	for _, a := range added {
		c.groupOf[a] = g
	}
	c.routingDirt = true
}

// diffSorted returns the addresses of new not in old and those of old not in
// new (both sorted and without duplicates).
func diffSorted(old, new []netip.Addr) (added, removed []netip.Addr) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || (i < len(old) && old[i].Less(new[j])):
			removed = append(removed, old[i])
			i++
		case i == len(old) || new[j].Less(old[i]):
			added = append(added, new[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

// mergeSorted returns a new sorted slice with the addresses of a and b.
func mergeSorted(a, b []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// knows reports whether a is already a peer address of cn.
func (cn *conn) knows(a netip.Addr) bool {
	_, ok := slices.BinarySearchFunc(cn.peers, a, netip.Addr.Compare)
	return ok
}

// pinned reports whether a is a peer address of cn whatever its SAs do
// (charon's remote_addrs or the policy's extra peers).
func (cn *conn) pinned(a netip.Addr) bool {
	for _, set := range [][]netip.Addr{cn.remoteAddrs, cn.pol.ExtraPeers} {
		for _, x := range set {
			if x.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// learnPeer records that SA s of cn is on remote address a: a is a peer
// address of cn until s goes away.
func (c *Controller) learnPeer(cn *conn, s *saState, a netip.Addr) {
	a = a.Unmap()
	if !validPeer(a) || slices.Contains(s.visited, a) {
		return
	}
	s.visited = append(s.visited, a)
	_, had := cn.learned[a]
	cn.learned[a] = append(cn.learned[a], s.sa.UniqueID)
	if had || cn.knows(a) {
		return
	}
	c.observe(PeerLearned{Conn: cn.name, Addr: a})
	old := cn.peers
	cn.peers = mergeSorted(old, []netip.Addr{a})
	c.peersChanged(cn, old)
}

// forgetSA drops what SA s taught cn: an address no other SA is or was on
// stops being a peer address.
func (c *Controller) forgetSA(cn *conn, s *saState) {
	var drop []netip.Addr
	for _, a := range s.visited {
		ids := slices.DeleteFunc(cn.learned[a], func(id uint32) bool { return id == s.sa.UniqueID })
		if len(ids) > 0 {
			cn.learned[a] = ids
			continue
		}
		delete(cn.learned, a)
		if !cn.pinned(a) {
			drop = append(drop, a)
		}
	}
	s.visited = nil
	if len(drop) == 0 {
		return
	}
	old := cn.peers
	cn.peers = slices.DeleteFunc(slices.Clone(old), func(a netip.Addr) bool { return slices.Contains(drop, a) })
	c.peersChanged(cn, old)
}

// rebuildRemotes recomputes the connections of every peer address, and then
// every pair and group.
func (c *Controller) rebuildRemotes() {
	c.activeOK = false // a pair's probe method follows its first connection
	clear(c.remotes)
	for _, cn := range c.connList {
		for _, a := range cn.peers {
			c.remotes[a] = append(c.remotes[a], cn)
		}
	}
	c.pairsDirt, c.allPairs = true, true
	c.groupsDirt = true
}

func (c *Controller) onConns(conns []Conn) {
	seen := map[string]bool{}
	for _, k := range conns {
		seen[k.Name] = true
		cn := c.conn(k.Name)
		was := cn.live()
		addrs := slices.Clone(k.RemoteAddrs)
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		cn.remoteAddrs = slices.Compact(addrs)
		c.recomputePeers(cn)
		if cn.live() != was {
			c.groupsDirt = true
		}
	}
	for _, cn := range slices.Clone(c.connList) {
		if !seen[cn.name] && len(cn.remoteAddrs) > 0 {
			cn.remoteAddrs = nil
			c.recomputePeers(cn)
			if !cn.live() {
				c.groupsDirt = true
			}
			c.gcConn(cn)
		}
	}
	c.routingDirt = true
}

func (c *Controller) onPrefer(ev EvPrefer) {
	cn := c.conn(ev.Conn)
	cn.prefer, cn.preferUntil = ev.Uplink, ev.Until
	if ev.Uplink == "" {
		cn.preferUntil = time.Time{}
	}
	c.observe(PreferChanged{Conn: cn.name, Uplink: cn.prefer, Until: cn.preferUntil})
	if cn.group != nil {
		c.buildClasses(cn.group) // an override ranks on its own
	}
	c.markDirty(cn)
	c.gcConn(cn)
}

// ---- network state ----

func (c *Controller) onNetState(ns NetState) {
	c.net = NetState{
		Links:    slices.Clone(ns.Links),
		Addrs:    slices.Clone(ns.Addrs),
		Gateways: slices.Clone(ns.Gateways),
	}
	clear(c.links)
	clear(c.uplinks)
	for _, l := range c.net.Links {
		c.links[l.Index] = l
		c.uplinks[l.Index] = c.pol.Uplink(l.Name, policy.Kind(l.Kind))
	}
	c.recomputeLocals()
	c.markAllDirty()
	c.netSeen = true
}

// recomputeLocals derives the locally operational addresses (RFC 4621 §2).
func (c *Controller) recomputeLocals() {
	clear(c.localWhy)
	var ls []localAddr
	for _, a := range c.net.Addrs {
		ip := a.Prefix.Addr().Unmap()
		l, ok := c.links[a.LinkIdx]
		var why PathReason
		switch {
		case !Available(a):
			why = ReasonAddrGone
		case !ok || !l.Up:
			why = ReasonLinkDown
		case c.uplinks[a.LinkIdx].Exclude:
			why = ReasonExcluded
		}
		if old, seen := c.localWhy[ip]; seen && old == ReasonNone {
			continue // the same address on two links: the first (lowest index) wins
		}
		c.localWhy[ip] = why
		if why == ReasonNone {
			ls = append(ls, localAddr{addr: ip, linkIdx: a.LinkIdx, deprecated: a.Flags&AddrDeprecated != 0})
		}
	}
	slices.SortFunc(ls, func(x, y localAddr) int { return x.addr.Compare(y.addr) })
	ls = slices.CompactFunc(ls, func(x, y localAddr) bool { return x.addr == y.addr })
	c.locals = ls
	c.pairsDirt, c.allPairs = true, true
	c.netGen++ // routing entries depend on links, addresses, gateways
}

// nexthop returns the gateway of a link for a family (zero: on-link).
func (c *Controller) nexthop(linkIdx int, v4 bool) netip.Addr {
	for _, g := range c.net.Gateways {
		if g.LinkIdx == linkIdx && g.Via.IsValid() && g.Via.Unmap().Is4() == v4 {
			return g.Via.Unmap()
		}
	}
	return netip.Addr{}
}

// syncPairs recomputes the candidate pairs: every locally operational address
// × every peer address of the same family, shared by all connections. Only
// the peer addresses in dirtyRemotes are looked at, unless allPairs.
func (c *Controller) syncPairs() {
	c.pairsDirt = false
	full := c.allPairs
	c.allPairs = false
	var rs []netip.Addr
	if full {
		for r := range c.remotes {
			rs = append(rs, r)
		}
		for r := range c.byRemote {
			if _, ok := c.remotes[r]; !ok {
				rs = append(rs, r)
			}
		}
	} else {
		for r := range c.dirtyRemotes {
			rs = append(rs, r)
		}
	}
	clear(c.dirtyRemotes)
	want := map[Pair]localAddr{}
	for _, r := range rs {
		cs := c.remotes[r]
		if len(cs) == 0 {
			continue
		}
		// A peer address used only by connections whose SAs are all
		// responder SAs (we never steer them) gets only the pairs SAs are
		// on: monitoring, not candidates.
		monitorOnly := true
		for _, cn := range cs {
			if !c.responderOnly(cn) {
				monitorOnly = false
				break
			}
		}
		for _, l := range c.locals {
			k := Pair{Local: l.addr, Remote: r}
			if l.addr.Is4() == r.Is4() && (!monitorOnly || c.saOn[k] > 0) {
				want[k] = l
			}
		}
	}
	for k := range want {
		c.probeDirty[k] = true // new, or its connections changed
	}
	var gone []Pair
	for _, r := range rs {
		for _, p := range c.byRemote[r] {
			if _, ok := want[p.p]; !ok {
				gone = append(gone, p.p)
			}
		}
	}
	slices.SortFunc(gone, comparePair)
	changed, siblings := false, false
	for _, k := range gone {
		p := c.pairs[k]
		why := ReasonPeerGone
		if _, ok := c.remotes[k.Remote]; ok {
			why = ReasonAddrGone
			if w, ok := c.localWhy[k.Local]; ok {
				why = w
			}
			if why == ReasonNone {
				why = ReasonResponderOnly
			}
		}
		if why != ReasonResponderOnly {
			siblings = siblings || p.state.Usable() // setState restarts its siblings' stability
			c.setState(p, PathDown, why)
		}
		delete(c.pairs, k)
		c.observe(PairRemoved{Pair: k, Reason: why})
		if p.started.Pair.Local.IsValid() {
			c.stopped = append(c.stopped, k)
		}
		changed = true
	}
	var added []Pair
	for k, l := range want {
		up := c.uplinks[l.linkIdx]
		p, ok := c.pairs[k]
		if !ok {
			p = &pair{p: k, since: c.now}
			c.pairs[k] = p
			added = append(added, k)
			changed = true
		}
		if p.linkIdx != l.linkIdx || p.uplink != up {
			changed = true
		}
		p.linkIdx, p.uplink = l.linkIdx, up
		p.deprecated = l.deprecated
	}
	slices.SortFunc(added, comparePair)
	for _, k := range added {
		p := c.pairs[k]
		p.slaMask = c.slaMask(p)
		c.observe(PairAdded{Pair: k, Uplink: p.uplink.Name})
	}
	if !changed {
		return
	}
	if full {
		c.pairKeys = c.pairKeys[:0]
		for k := range c.pairs {
			c.pairKeys = append(c.pairKeys, k)
		}
		slices.SortFunc(c.pairKeys, comparePair)
		clear(c.byRemote)
		for _, k := range c.pairKeys {
			c.byRemote[k.Remote] = append(c.byRemote[k.Remote], c.pairs[k])
		}
		c.markAllDirty()
		return
	}
	for _, k := range gone {
		if i, ok := slices.BinarySearchFunc(c.pairKeys, k, comparePair); ok {
			c.pairKeys = slices.Delete(c.pairKeys, i, i+1)
		}
	}
	for _, k := range added {
		i, _ := slices.BinarySearchFunc(c.pairKeys, k, comparePair)
		c.pairKeys = slices.Insert(c.pairKeys, i, k)
	}
	for _, r := range rs {
		var ps []*pair
		for _, l := range c.locals {
			if p := c.pairs[Pair{Local: l.addr, Remote: r}]; p != nil {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			delete(c.byRemote, r)
		} else {
			c.byRemote[r] = ps
		}
	}
	if siblings {
		c.markAllDirty()
		return
	}
	for _, r := range rs {
		if g := c.groupOf[r]; g != nil {
			c.markGroup(g)
		}
	}
	c.anyDirty = true
}

// responderOnly reports whether cn has SAs and none is ours to steer.
func (c *Controller) responderOnly(cn *conn) bool {
	return len(cn.sas) > 0 && cn.nInit == 0
}

func comparePair(a, b Pair) int {
	if r := a.Local.Compare(b.Local); r != 0 {
		return r
	}
	return a.Remote.Compare(b.Remote)
}

func (c *Controller) setState(p *pair, to PathState, why PathReason) {
	if p.state == to && p.reason == why {
		return
	}
	from := p.state
	p.state, p.reason, p.since = to, why, c.now
	if to == PathOperational {
		if from != PathOperational {
			p.stable = c.now
		}
	} else {
		p.stable = time.Time{}
	}
	if from != to {
		c.observe(PathStateChanged{Pair: p.p, Uplink: p.uplink.Name, From: from, To: to, Reason: why})
	}
	if to == PathDown && from.Usable() {
		// A pair just failed: its siblings on the same uplink (either
		// family) may share the fault, and a standby prober may not have
		// noticed the outage yet. Their stability restarts now, so no move
		// onto them happens before the hold-down proves them again.
		for _, q := range c.pairs {
			if q != p && q.linkIdx == p.linkIdx && q.state == PathOperational {
				q.stable = c.now
			}
		}
	}
}

// ---- probes ----

func (c *Controller) onProbe(ev EvProbeResult) {
	k := Pair{Local: ev.Pair.Local.Unmap(), Remote: ev.Pair.Remote.Unmap()}
	p, ok := c.pairs[k]
	if !ok {
		return // a late result for a pair that is gone
	}
	oldNAT, oldClass, oldHalf, oldMask := p.stats.NAT, p.rttClass, p.rttHalfClass, p.slaMask
	p.stats = ev.Stats
	in, why := classify(ev, c.pol.Path)
	changed := false
	if to, ok := transition(p.state, in); ok {
		if p.state == PathDown {
			why = ReasonReply // any reply carrying our randomness restarts testing
		}
		c.setState(p, to, why)
		changed = true
	}
	// the ranking uses half the RTT of a connection's current pair
	p.rttClass, p.rttHalfClass = policy.RTTClass(p.rtt()), policy.RTTClass(p.rtt()/2)
	p.slaMask = c.slaMask(p)
	c.planArm(p, ev)
	g := c.groupOf[k.Remote]
	if g == nil {
		return
	}
	// Only the group that has the peer address ranks this pair; a group
	// waiting for a confirmation looks at every reply of its pairs.
	if changed || p.stats.NAT != oldNAT || p.rttClass != oldClass || p.rttHalfClass != oldHalf || p.slaMask != oldMask ||
		(g.confirm != nil && ev.OK) {
		c.markGroup(g)
	}
}

// wantStart is the ActProbeStart a pair should have running.
func (c *Controller) wantStart(p *pair) ActProbeStart {
	prof := ProfileStandby
	switch {
	case c.active[p.p]:
		prof = ProfileActive
	case p.uplink.MeteredStandby():
		prof = ProfileMeteredStandby
	}
	m := policy.MethodICMP
	if cs := c.remotes[p.p.Remote]; len(cs) > 0 {
		m = cs[0].pol.Method
	}
	return ActProbeStart{Pair: p.p, LinkIdx: p.linkIdx, Uplink: p.uplink.Name, Method: probeMethod(m), Profile: prof}
}

func probeMethod(m policy.Method) ProbeMethod {
	switch m {
	case policy.MethodSTAMP:
		return ProbeSTAMP
	case policy.MethodIKE:
		return ProbeIKE
	}
	return ProbeICMP
}

func (c *Controller) recomputeActive() {
	if c.active == nil {
		c.active = map[Pair]bool{}
	}
	clear(c.active)
	for k := range c.saOn {
		c.active[k] = true
	}
	for _, g := range c.groups {
		if g.pending != nil {
			c.active[g.pending.to] = true
		}
	}
	c.activeOK = true
}

// isTarget reports whether a pending steer targets pair k (only the group
// of k's peer address can steer onto it).
func (c *Controller) isTarget(k Pair) bool {
	g := c.groupOf[k.Remote]
	return g != nil && g.pending != nil && g.pending.to == k
}

// restartProbe appends the ActProbeStart p needs when its prober should
// run with other parameters.
func (c *Controller) restartProbe(out []Action, p *pair) []Action {
	w := c.wantStart(p)
	if w == p.started {
		return out
	}
	p.started = w
	if to, ok := transition(p.state, inProbeStart); ok {
		c.setState(p, to, ReasonProbeStarted)
	}
	return append(out, w)
}

// flush assembles the Step's actions and the next deadline.
func (c *Controller) flush() []Action {
	var out []Action
	slices.SortFunc(c.stopped, comparePair)
	for _, k := range slices.Compact(c.stopped) {
		if _, back := c.pairs[k]; !back {
			out = append(out, ActProbeStop{Pair: k})
		}
	}
	c.stopped = c.stopped[:0]
	// The watched SAs change with the SAs and the groups. Emitted last.
	var watch []Action
	if c.watchAll || len(c.watchConns) > 0 {
		if w, changed := c.syncWatch(); changed {
			watch = append(watch, w)
		}
	}
	// What a pair's prober should run changes only with the active set,
	// the pair set, the connections of its peer address or the policy:
	// steers, groups, policy and network changes clear activeOK (every pair
	// is looked at), SA events and peer address changes mark the pairs
	// they touch.
	if !c.activeOK {
		c.recomputeActive()
		clear(c.probeDirty)
		for _, k := range c.pairKeys {
			out = c.restartProbe(out, c.pairs[k])
		}
	} else if len(c.probeDirty) > 0 {
		ks := make([]Pair, 0, len(c.probeDirty))
		for k := range c.probeDirty {
			ks = append(ks, k)
		}
		clear(c.probeDirty)
		slices.SortFunc(ks, comparePair)
		for _, k := range ks {
			if c.saOn[k] > 0 || c.isTarget(k) {
				c.active[k] = true
			} else {
				delete(c.active, k)
			}
			if p := c.pairs[k]; p != nil {
				out = c.restartProbe(out, p)
			}
		}
	}
	if c.routingAct != nil {
		out = append(out, *c.routingAct)
		c.routingAct = nil
	}
	c.fireArm()
	out = append(out, c.acts...)
	out = append(out, watch...)
	c.acts = nil
	if c.decided {
		c.decided = false
		c.deadline = time.Time{}
		for _, g := range c.groups {
			if !g.deadline.IsZero() && (c.deadline.IsZero() || g.deadline.Before(c.deadline)) {
				c.deadline = g.deadline
			}
		}
		if c.arm != nil && (c.deadline.IsZero() || c.arm.at.Before(c.deadline)) {
			c.deadline = c.arm.at
		}
	}
	return out
}

// ---- SAs ----

func saPair(sa SA) Pair {
	return Pair{Local: sa.Local.Addr().Unmap(), Remote: sa.Remote.Addr().Unmap()}
}

func (c *Controller) onSAList(sas []SA) {
	keep := map[uint32]bool{}
	for _, s := range sas {
		keep[s.UniqueID] = true
	}
	ids := make([]uint32, 0, len(c.sas))
	for id := range c.sas {
		if !keep[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.removeSA(id)
	}
	sorted := slices.Clone(sas)
	slices.SortFunc(sorted, func(a, b SA) int { return int(int64(a.UniqueID) - int64(b.UniqueID)) })
	for _, s := range sorted {
		c.upsertSA(s)
	}
	c.saListSeen = true
	c.routingDirt = true
}

func (c *Controller) upsertSA(sa SA) {
	c.watchConn(sa.Conn)
	sa.VIPs = slices.Clone(sa.VIPs)
	np := saPair(sa)
	s, ok := c.sas[sa.UniqueID]
	if ok && s.sa.Conn != sa.Conn {
		c.removeSA(sa.UniqueID)
		ok = false
	}
	cn := c.conn(sa.Conn)
	wasResp := c.responderOnly(cn)
	if !ok {
		s = &saState{sa: sa, pair: np}
		c.sas[sa.UniqueID] = s
		i, _ := slices.BinarySearch(cn.sas, sa.UniqueID)
		cn.sas = slices.Insert(cn.sas, i, sa.UniqueID)
		if len(cn.sas) == 1 && len(cn.remoteAddrs) == 0 {
			c.groupsDirt = true // the connection became live
		}
		c.observe(SAAdded{Conn: cn.name, ID: sa.UniqueID, Pair: np, Initiator: sa.Initiator})
	} else {
		if s.pair != np {
			o := SAMoved{Conn: cn.name, ID: sa.UniqueID, From: s.pair, To: np}
			if g := cn.group; g != nil {
				o.Group = g.name
				o.Steered = g.pending != nil && g.pending.to == np
			}
			c.observe(o)
		}
		c.account(cn, s, -1)
		s.sa, s.pair = sa, np
	}
	c.account(cn, s, 1)
	c.learnPeer(cn, s, np.Remote)
	if c.responderOnly(cn) != wasResp {
		for _, a := range cn.peers {
			c.dirtyRemote(a) // its peer addresses may become candidates, or stop being ones
		}
	}
	c.markDirty(cn)
	c.saChanged(cn)
}

// saChanged notes that an SA of cn changed: its group's routing entry may
// (an SA that is not steerable keeps its peer address from a prohibit).
func (c *Controller) saChanged(cn *conn) {
	if cn.group != nil {
		cn.group.dgOK = false
	}
	c.routingDirt = true
}

func (c *Controller) removeSA(id uint32) {
	s, ok := c.sas[id]
	if !ok {
		return
	}
	c.watchConn(s.sa.Conn)
	cn := c.conns[s.sa.Conn]
	wasResp := c.responderOnly(cn)
	c.account(cn, s, -1)
	delete(c.sas, id)
	if i, found := slices.BinarySearch(cn.sas, id); found {
		cn.sas = slices.Delete(cn.sas, i, i+1)
	}
	c.observe(SARemoved{Conn: cn.name, ID: id})
	c.forgetSA(cn, s)
	if len(cn.sas) == 0 && len(cn.remoteAddrs) == 0 {
		c.groupsDirt = true // the connection is no longer live
	}
	if c.responderOnly(cn) != wasResp {
		for _, a := range cn.peers {
			c.dirtyRemote(a)
		}
	}
	c.markDirty(cn)
	c.saChanged(cn)
	c.gcConn(cn)
}

func (c *Controller) onIKEUpdate(ev EvIKEUpdate) {
	s, ok := c.sas[ev.UniqueID]
	if !ok {
		// Unknown SA: the next SA list brings it (with its peer address).
		return
	}
	sa := s.sa
	sa.Local, sa.Remote = ev.NewLocal, ev.NewRemote
	c.upsertSA(sa)
}

func (c *Controller) onCharon(up bool) {
	if up == c.charonUp {
		return
	}
	c.charonUp = up
	c.observe(CharonChanged{Up: up})
	// The routing state freezes while charon is away (the kernel keeps the
	// tunnels where they were) and is recomputed from the next SA list.
	c.saListSeen = false
	if up {
		return // the adapter follows with a full EvSAList
	}
	for _, g := range c.groups {
		if g.pending != nil {
			c.abandon(g, FailCharonDown, "charon went away")
		}
	}
	ids := make([]uint32, 0, len(c.sas))
	for id := range c.sas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.removeSA(id)
	}
}

// onRoutingApplied fails the pending steers of the groups whose entries the
// steerer could not install.
func (c *Controller) onRoutingApplied(ev EvRoutingApplied) {
	if ev.Err == nil && len(ev.Failed) == 0 {
		return
	}
	for _, name := range ev.Failed {
		g := c.groupByKey[name]
		if g == nil || g.pending == nil || g.pending.gen == 0 || g.pending.gen > ev.Gen {
			continue
		}
		why := "routing state not installed"
		if ev.Err != nil {
			why = ev.Err.Error()
		}
		c.fail(g, FailKernel, why)
	}
}
