package mobike

import (
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

	pairs     map[Pair]*pair
	pairKeys  []Pair // sorted
	byRemote  map[netip.Addr][]*pair
	stopped   []Pair        // removed in this Step, ActProbeStop pending
	active    map[Pair]bool // pairs an SA is on or a steer targets
	activeOK  bool          // active is up to date
	remotes   map[netip.Addr][]*conn
	slas      []policy.SLA // distinct connection SLAs (for pair signatures)
	pairsDirt bool         // pair set must be recomputed

	conns    map[string]*conn
	connList []*conn // sorted by name
	sas      map[uint32]*saState
	charonUp bool

	groups     []*group // steering groups, by key
	groupByKey map[string]*group
	groupsDirt bool // group membership must be recomputed

	// The routing state: recomputed when routingDirt, emitted (ActRouting)
	// when it differs from desired and the core is ready (netSeen and
	// saListSeen since charon came up).
	routingDirt bool
	netSeen     bool
	saListSeen  bool
	gen         uint64
	desired     Desired
	routingAct  *ActRouting // emitted by this Step

	rankCache   map[rankKey]*rankResult
	peerSets    map[string]*peerSet // interned peer-set keys, reference counted
	nextPeerSet uint64
	evals       uint64 // group evaluations so far (conn.steeredAt)
	anyDirty    bool   // some group is dirty
	decided     bool   // decide ran: recompute the deadline
	acts        []Action
	trace       []Observation
	deadline    time.Time
}

type peerSet struct {
	id   uint64
	refs int
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
	explicit bool // pol comes from Settings.Conns (not the default)
	order    int  // place in Settings.Conns (unlisted: after all listed)

	remoteAddrs []netip.Addr // charon's remote_addrs (EvConns)
	// learned are the remote addresses SAs of the connection are or have
	// been on, each with those SAs' IDs: an address is dropped with its
	// last SA (bounded memory on responders with road-warrior clients).
	learned  map[netip.Addr][]uint32
	peers    []netip.Addr // sorted union of remoteAddrs, pol.ExtraPeers, learned
	peersKey string       // interned peers (equal sets, equal IDs)
	peersID  uint64
	sas      []uint32 // sorted

	group       *group // nil when not live (not loaded in charon, no SA)
	steeredAt   uint64 // Controller.evals of the last evaluation that found it steered
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

type rankKey struct {
	pol   string
	peers uint64
	cur   Pair
	pref  string
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
		conns:      map[string]*conn{},
		peerSets:   map[string]*peerSet{},
		sas:        map[uint32]*saState{},
		groupByKey: map[string]*group{},
		charonUp:   true,
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

func (c *Controller) slaMask(p *pair) uint64 {
	var m uint64
	for i, s := range c.slas {
		if s.Met(p.stats.LossRatio, p.rtt()) {
			m |= 1 << i
		}
	}
	return m
}

// markDirty asks for the connection's group to be evaluated in this Step
// (groups rebuilt in this Step are evaluated anyway).
func (c *Controller) markDirty(cn *conn) {
	if cn.group != nil {
		cn.group.dirty = true
	}
	c.anyDirty = true
}

func (c *Controller) markAllDirty() {
	for _, g := range c.groups {
		g.dirty = true
	}
	c.anyDirty = true
	c.activeOK = false
	c.routingDirt = true
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
	c.releasePeerSet(cn.peersKey)
	cn.peersKey = ""
	c.rebuildRemotes()
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
	if slices.Equal(ps, cn.peers) && cn.peersKey != "" {
		return false
	}
	cn.peers = ps
	var b strings.Builder
	b.WriteByte('|')
	for _, a := range ps {
		b.WriteString(a.String())
		b.WriteByte(',')
	}
	key := b.String()
	if key != cn.peersKey {
		ps, ok := c.peerSets[key]
		if !ok {
			c.nextPeerSet++
			ps = &peerSet{id: c.nextPeerSet}
			c.peerSets[key] = ps
		}
		ps.refs++
		c.releasePeerSet(cn.peersKey)
		cn.peersKey, cn.peersID = key, ps.id
	}
	c.markDirty(cn)
	c.pairsDirt = true
	c.groupsDirt = true
	return true
}

// releasePeerSet drops one reference to an interned peer set.
func (c *Controller) releasePeerSet(key string) {
	if ps, ok := c.peerSets[key]; ok {
		if ps.refs--; ps.refs <= 0 {
			delete(c.peerSets, key)
		}
	}
}

// knows reports whether a is already a peer address of cn.
func (cn *conn) knows(a netip.Addr) bool {
	_, ok := slices.BinarySearchFunc(cn.peers, a, netip.Addr.Compare)
	return ok
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
	if had {
		return
	}
	if !cn.knows(a) {
		c.observe(PeerLearned{Conn: cn.name, Addr: a})
	}
	if c.recomputePeers(cn) {
		c.rebuildRemotes()
	}
}

// forgetSA drops what SA s taught cn: an address no other SA is or was on
// stops being a peer address.
func (c *Controller) forgetSA(cn *conn, s *saState) {
	changed := false
	for _, a := range s.visited {
		ids := slices.DeleteFunc(cn.learned[a], func(id uint32) bool { return id == s.sa.UniqueID })
		if len(ids) == 0 {
			delete(cn.learned, a)
			changed = true
		} else {
			cn.learned[a] = ids
		}
	}
	s.visited = nil
	if changed && c.recomputePeers(cn) {
		c.rebuildRemotes()
	}
}

func (c *Controller) rebuildRemotes() {
	c.activeOK = false // a pair's probe method follows its first connection
	clear(c.remotes)
	for _, cn := range c.connList {
		for _, a := range cn.peers {
			c.remotes[a] = append(c.remotes[a], cn)
		}
	}
	c.pairsDirt = true
	c.groupsDirt = true
}

func (c *Controller) onConns(conns []Conn) {
	seen := map[string]bool{}
	for _, k := range conns {
		seen[k.Name] = true
		cn := c.conn(k.Name)
		addrs := slices.Clone(k.RemoteAddrs)
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		cn.remoteAddrs = slices.Compact(addrs)
		c.recomputePeers(cn)
	}
	for _, cn := range slices.Clone(c.connList) {
		if !seen[cn.name] && len(cn.remoteAddrs) > 0 {
			cn.remoteAddrs = nil
			c.recomputePeers(cn)
			c.gcConn(cn)
		}
	}
	c.rebuildRemotes()
	c.routingDirt = true
}

func (c *Controller) onPrefer(ev EvPrefer) {
	cn := c.conn(ev.Conn)
	cn.prefer, cn.preferUntil = ev.Uplink, ev.Until
	if ev.Uplink == "" {
		cn.preferUntil = time.Time{}
	}
	c.observe(PreferChanged{Conn: cn.name, Uplink: cn.prefer, Until: cn.preferUntil})
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
	c.pairsDirt = true
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
// × every peer address of the same family, shared by all connections.
func (c *Controller) syncPairs() {
	c.pairsDirt = false
	want := map[Pair]localAddr{}
	var occupied map[Pair]bool
	respOnly := map[*conn]bool{}
	for _, cn := range c.connList {
		respOnly[cn] = c.responderOnly(cn)
	}
	for r, cs := range c.remotes {
		// A peer address used only by connections whose SAs are all
		// responder SAs (we never steer them) gets only the pairs SAs are
		// on: monitoring, not candidates.
		monitorOnly := true
		for _, cn := range cs {
			if !respOnly[cn] {
				monitorOnly = false
				break
			}
		}
		if monitorOnly && occupied == nil {
			occupied = map[Pair]bool{}
			for _, s := range c.sas {
				occupied[s.pair] = true
			}
		}
		for _, l := range c.locals {
			k := Pair{Local: l.addr, Remote: r}
			if l.addr.Is4() == r.Is4() && (!monitorOnly || occupied[k]) {
				want[k] = l
			}
		}
	}
	changed := false
	for _, k := range c.pairKeys {
		if _, ok := want[k]; ok {
			continue
		}
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
}

// responderOnly reports whether cn has SAs and none is ours to steer.
func (c *Controller) responderOnly(cn *conn) bool {
	if len(cn.sas) == 0 {
		return false
	}
	for _, id := range cn.sas {
		if c.sas[id].sa.Initiator {
			return false
		}
	}
	return true
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
	oldNAT, oldClass, oldMask := p.stats.NAT, p.rttClass, p.slaMask
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
	p.rttClass = policy.RTTClass(p.rtt())
	p.slaMask = c.slaMask(p)
	if changed || p.stats.NAT != oldNAT || p.rttClass != oldClass || p.slaMask != oldMask {
		for _, cn := range c.remotes[k.Remote] {
			c.markDirty(cn)
		}
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
	for _, s := range c.sas {
		c.active[s.pair] = true
	}
	for _, g := range c.groups {
		if g.pending != nil {
			c.active[g.pending.to] = true
		}
	}
	c.activeOK = true
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
	// What a pair's prober should run changes only with the active set,
	// the pair set or the policy, all of which clear activeOK.
	if !c.activeOK {
		c.recomputeActive()
		for _, k := range c.pairKeys {
			p := c.pairs[k]
			w := c.wantStart(p)
			if w == p.started {
				continue
			}
			p.started = w
			out = append(out, w)
			if to, ok := transition(p.state, inProbeStart); ok {
				c.setState(p, to, ReasonProbeStarted)
			}
		}
	}
	if c.routingAct != nil {
		out = append(out, *c.routingAct)
		c.routingAct = nil
	}
	out = append(out, c.acts...)
	c.acts = nil
	if c.decided {
		c.decided = false
		c.deadline = time.Time{}
		for _, g := range c.groups {
			if !g.deadline.IsZero() && (c.deadline.IsZero() || g.deadline.Before(c.deadline)) {
				c.deadline = g.deadline
			}
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
	sa.VIPs = slices.Clone(sa.VIPs)
	np := saPair(sa)
	s, ok := c.sas[sa.UniqueID]
	if ok && s.sa.Conn != sa.Conn {
		c.removeSA(sa.UniqueID)
		ok = false
	}
	cn := c.conn(sa.Conn)
	if !ok {
		s = &saState{sa: sa, pair: np}
		c.sas[sa.UniqueID] = s
		i, _ := slices.BinarySearch(cn.sas, sa.UniqueID)
		cn.sas = slices.Insert(cn.sas, i, sa.UniqueID)
		if len(cn.sas) == 1 {
			c.groupsDirt = true // the connection may have become live
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
		s.sa, s.pair = sa, np
	}
	c.learnPeer(cn, s, np.Remote)
	c.markDirty(cn)
	c.activeOK = false
	c.pairsDirt = true
	c.routingDirt = true
}

func (c *Controller) removeSA(id uint32) {
	s, ok := c.sas[id]
	if !ok {
		return
	}
	delete(c.sas, id)
	cn := c.conns[s.sa.Conn]
	if i, found := slices.BinarySearch(cn.sas, id); found {
		cn.sas = slices.Delete(cn.sas, i, i+1)
	}
	c.observe(SARemoved{Conn: cn.name, ID: id})
	c.forgetSA(cn, s)
	if len(cn.sas) == 0 {
		c.groupsDirt = true
	}
	c.markDirty(cn)
	c.activeOK = false
	c.pairsDirt = true
	c.routingDirt = true
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
