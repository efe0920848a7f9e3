// Package sim is a deterministic simulated world for scenario tests of the
// mobike core: a host with uplinks and addresses (IPv6 DAD and lifetimes), a
// peer with one or more addresses, per-path loss, latency, blackholes,
// one-way paths and NAT, a simulated prober that reports EvProbeResult with
// statistics like the real one, and a fake charon that holds IKE_SAs and
// follows steering the way charon 5.9.8 does (lab-notes.md). Time is virtual:
// the World drives the real mobike.Controller through Step and NextDeadline
// exactly like the daemon's runloop, and records a text trace of everything
// the controller observed and did.
//
// The fake charon, simplified:
//   - ~100 ms after a route or rule change by the controller (ActRouting:
//     the world's kernel becomes the desired state) it re-checks every
//     initiator SA: when its route lookup towards the SA's peer address no
//     longer gives the SA's local address, or the peer address is prohibited
//     (host-wide, as in the kernel), it probes every known peer address from
//     the source its lookup gives and moves to the first pair that answers
//     (emitting ike-update);
//   - ~100 ms after a link or address event it moves every SA whose local
//     address is no longer usable to the best remaining route;
//   - it never moves back on its own, and without PreferBestPath it ignores
//     route changes (the "not configured" case).
package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/policy"
)

// Epoch is the virtual clock's start.
var Epoch = time.Unix(0, 0).UTC()

// Timing of the simulated parts.
const (
	RoamDelay        = 100 * time.Millisecond // charon's ROAM_DELAY
	MonitorDelay     = 10 * time.Millisecond  // netlink event → EvNetState
	ApplyDelay       = time.Millisecond       // ActRouting → EvRoutingApplied
	ProbeTimeout     = time.Second
	ActiveInterval   = 200 * time.Millisecond
	StandbyInterval  = time.Second
	MeteredInterval  = 5 * time.Second
	probeWindow      = 10
	defaultLatencyMS = 10
)

// Options configure a World.
type Options struct {
	Seed   uint64
	Policy policy.Settings
	Ranker policy.Ranker
	// Quiet keeps no text trace and no Observations (large worlds, e.g.
	// RunScale); OnObservation still sees every observation.
	Quiet bool
	// Probes tunes the simulated prober; the zero value is the legacy
	// model (fixed 1 s timeout, no burst on a first loss).
	Probes ProbeModel
}

// ProbeModel is the simulated prober's timing. Zero fields take the
// package defaults (ProbeTimeout, ActiveInterval, StandbyInterval).
type ProbeModel struct {
	Timeout time.Duration // every probe's timeout
	Active  time.Duration // interval on an active pair
	Standby time.Duration // interval on a standby pair
	// Burst > 0 starts a confirmation burst of that many probes at the
	// first loss of a streak, as monitor/probe does (results carry
	// Confirming while it is in flight). ActProbeConfirm always sends a
	// burst (of Burst probes, 3 when zero), a third of the timeout apart.
	Burst int
}

func (m ProbeModel) withDefaults() ProbeModel {
	if m.Timeout <= 0 {
		m.Timeout = ProbeTimeout
	}
	if m.Active <= 0 {
		m.Active = ActiveInterval
	}
	if m.Standby <= 0 {
		m.Standby = StandbyInterval
	}
	return m
}

// Impair is a path impairment, on a link (all its pairs) or one pair.
type Impair struct {
	Loss      float64       // probability a probe or reply is lost
	Latency   time.Duration // round-trip time (a pair's is added to its link's)
	Blackhole bool          // nothing gets through (link stays up)
	OneWay    bool          // requests pass, replies are dropped
	NAT       bool          // a NAT rewrites the source on this path
}

func (a Impair) merge(b Impair) Impair {
	return Impair{
		Loss:      max(a.Loss, b.Loss),
		Latency:   a.Latency + b.Latency,
		Blackhole: a.Blackhole || b.Blackhole,
		OneWay:    a.OneWay || b.OneWay,
		NAT:       a.NAT || b.NAT,
	}
}

// World is the simulated world. Not safe for concurrent use.
type World struct {
	Now    time.Time
	Ctl    *mobike.Controller
	Charon *Charon

	rng   *rand.Rand
	queue eventQueue
	seq   uint64

	links    []*mobike.Link // by index
	addrs    []mobike.Address
	gws      []mobike.Gateway
	linkImp  map[int]Impair
	pairImp  map[mobike.Pair]Impair
	peerDown map[netip.Addr]bool

	kernel   mobike.Desired             // the routing state last applied
	routes   map[netip.Addr]mobike.Pair // host routes by peer address
	prohibit map[netip.Addr]bool        // prohibited peer addresses (host-wide)
	SteerErr error                      // when set, applying a routing state fails for every group in it

	// Observations are every observation of the controller, in order, and
	// Alerts every alert it raised (for tests that look at typed causes).
	Observations []mobike.Observation
	Alerts       []mobike.ActAlert
	// Check, when set, runs after every Step with the actions (e.g. the
	// routing state's invariants).
	Check func(acts []mobike.Action)
	// OnEvent and OnObservation, when set, see every event delivered to the
	// controller and every observation it made.
	OnEvent       func(ev mobike.Event)
	OnObservation func(o mobike.Observation)
	// StepTime is the wall-clock time spent in the controller's Step (the
	// simulated world's own work excluded).
	StepTime time.Duration

	quiet bool
	pm    ProbeModel

	probers map[mobike.Pair]*prober
	trace   []string
	steps   int
}

// New returns an empty world at Epoch with a Controller and a fake charon.
func New(o Options) *World {
	w := &World{
		Now:      Epoch,
		quiet:    o.Quiet,
		pm:       o.Probes.withDefaults(),
		rng:      rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed)),
		linkImp:  map[int]Impair{},
		pairImp:  map[mobike.Pair]Impair{},
		peerDown: map[netip.Addr]bool{},
		routes:   map[netip.Addr]mobike.Pair{},
		prohibit: map[netip.Addr]bool{},
		probers:  map[mobike.Pair]*prober{},
	}
	w.Ctl = mobike.New(mobike.Config{Policy: o.Policy, Ranker: o.Ranker})
	w.Charon = &Charon{w: w, Up: true, PreferBestPath: true, sas: map[uint32]*mobike.SA{}, nextID: 1, extra: map[string][]netip.Addr{}}
	return w
}

// ---- event queue ----

type item struct {
	at  time.Time
	seq uint64
	fn  func()
}

type eventQueue []*item

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *eventQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// After runs fn at Now+d (in scheduling order among equal times).
func (w *World) After(d time.Duration, fn func()) {
	w.seq++
	heap.Push(&w.queue, &item{at: w.Now.Add(d), seq: w.seq, fn: fn})
}

// Run advances the virtual clock by d, delivering scheduled events and the
// controller's timers in time order.
func (w *World) Run(d time.Duration) { w.RunUntil(w.Now.Add(d)) }

// RunUntil advances the virtual clock to t.
func (w *World) RunUntil(t time.Time) {
	same, last := 0, w.Now
	for {
		next, fromQueue := time.Time{}, false
		if len(w.queue) > 0 {
			next, fromQueue = w.queue[0].at, true
		}
		if dl := w.Ctl.NextDeadline(); !dl.IsZero() {
			if dl.Before(w.Now) {
				dl = w.Now
			}
			if !fromQueue || dl.Before(next) {
				next, fromQueue = dl, false
			}
		}
		if next.IsZero() || next.After(t) {
			break
		}
		if next.Equal(last) {
			if same++; same > 100000 {
				panic("sim: livelock at " + w.rel(next))
			}
		} else {
			same, last = 0, next
		}
		w.Now = next
		if fromQueue {
			it := heap.Pop(&w.queue).(*item)
			it.fn()
		} else {
			w.Deliver(mobike.EvTimer{})
		}
	}
	w.Now = t
}

// Deliver feeds one event to the controller at Now, records the trace and
// executes the actions.
func (w *World) Deliver(ev mobike.Event) {
	w.steps++
	if w.OnEvent != nil {
		w.OnEvent(ev)
	}
	start := time.Now()
	acts := w.Ctl.Step(w.Now, ev)
	w.StepTime += time.Since(start)
	for _, o := range w.Ctl.TakeTrace() {
		if w.OnObservation != nil {
			w.OnObservation(o)
		}
		if w.quiet {
			continue
		}
		w.logf("%s", o)
		w.Observations = append(w.Observations, o)
	}
	if w.Check != nil {
		w.Check(acts)
	}
	for _, a := range acts {
		w.execute(a)
	}
}

func (w *World) rel(t time.Time) string {
	return fmt.Sprintf("%8.3fs", t.Sub(Epoch).Seconds())
}

func (w *World) logf(format string, args ...any) {
	if w.quiet {
		return
	}
	w.trace = append(w.trace, w.rel(w.Now)+"  "+fmt.Sprintf(format, args...))
}

// Note adds a scenario annotation to the trace.
func (w *World) Note(format string, args ...any) { w.logf("--- "+format, args...) }

// Trace returns the trace, one line per entry.
func (w *World) Trace() string { return strings.Join(w.trace, "\n") + "\n" }

// Steps returns how many events were delivered.
func (w *World) Steps() int { return w.steps }

// ---- actions ----

func (w *World) execute(a mobike.Action) {
	switch a := a.(type) {
	case mobike.ActProbeStart:
		w.logf("act probe-start %s [%s] %s %s", a.Pair, a.Uplink, a.Method, a.Profile)
		w.startProber(a)
	case mobike.ActProbeConfirm:
		w.logf("act probe-confirm %s", a.Pair)
		if p := w.probers[a.Pair]; p != nil {
			n := w.pm.Burst
			if n <= 0 {
				n = 3
			}
			w.startBurst(p, n)
		}
	case mobike.ActTrafficWatch:
		// The simulated SAs carry no traffic: nothing to read.
	case mobike.ActArmRoam:
		// A route added and removed in mobiked's table: charon's roam
		// evaluation starts, or merges with a pending one.
		w.logf("act arm-roam %s", a.Pair)
		w.Charon.routeChanged()
	case mobike.ActProbeStop:
		w.logf("act probe-stop %s", a.Pair)
		if p := w.probers[a.Pair]; p != nil {
			p.gen++
			delete(w.probers, a.Pair)
		}
	case mobike.ActRouting:
		if !w.quiet {
			w.logRoutingChange(a.State)
		}
		err := w.SteerErr
		ev := mobike.EvRoutingApplied{Gen: a.Gen, Err: err}
		if err != nil {
			for _, g := range a.State.Groups {
				ev.Failed = append(ev.Failed, g.Name)
			}
		} else {
			w.kernel = a.State
			clear(w.routes)
			clear(w.prohibit)
			for _, g := range a.State.Groups {
				w.routes[g.Pair.Remote] = g.Pair
				for _, p := range g.Prohibit {
					w.prohibit[p] = true
				}
			}
			w.Charon.routeChanged()
		}
		w.After(ApplyDelay, func() { w.Deliver(ev) })
	case mobike.ActAlert:
		w.logf("act alert %s %s %s: %s", a.Severity, a.Conn, a.Reason, a.Message)
		w.Alerts = append(w.Alerts, a)
	default:
		panic(fmt.Sprintf("sim: unknown action %T", a))
	}
}

// logRoutingChange writes the groups' entries that differ from the kernel's
// (uplink tables follow the network and are not logged).
func (w *World) logRoutingChange(d mobike.Desired) {
	old := map[string]bool{}
	for _, g := range w.kernel.Groups {
		old[g.Name] = true
	}
	oldLines := map[string]bool{}
	for _, l := range w.kernel.Lines() {
		oldLines[l] = true
	}
	for i, l := range d.Lines() {
		if i < len(d.Uplinks) {
			continue
		}
		delete(old, d.Groups[i-len(d.Uplinks)].Name)
		if !oldLines[l] {
			w.logf("act routing %s", l)
		}
	}
	var gone []string
	for n := range old {
		gone = append(gone, n)
	}
	slices.Sort(gone)
	for _, n := range gone {
		w.logf("act routing release group %s", n)
	}
}

// Kernel returns the routing state the world's kernel holds.
func (w *World) Kernel() mobike.Desired { return w.kernel }

// Prohibited reports whether the kernel prohibits a peer address.
func (w *World) Prohibited(addr string) bool { return w.prohibit[netip.MustParseAddr(addr)] }

// SetProhibit adds or removes a prohibit rule behind the controller's back
// (a half-applied change left by a crash), without a roam.
func (w *World) SetProhibit(addr string, on bool) {
	w.Note("kernel: prohibit %s = %t", addr, on)
	a := netip.MustParseAddr(addr)
	if on {
		w.prohibit[a] = true
	} else {
		delete(w.prohibit, a)
	}
}

// ---- host network ----

// UplinkSpec describes one uplink of the simulated host.
type UplinkSpec struct {
	Name     string
	Kind     mobike.UplinkKind
	Addrs    []string // prefixes, e.g. "10.1.0.2/24", "2001:db8:1::2/64"
	Gateways []string // next hops, one per family
	Metric   int
	Latency  time.Duration // round-trip time of its paths; 0 = 10 ms
	Down     bool
}

// AddUplink adds a link with its addresses and default routes (no event is
// delivered before Start or the next network change).
func (w *World) AddUplink(s UplinkSpec) int {
	idx := len(w.links) + 2 // 1 is lo
	w.links = append(w.links, &mobike.Link{Index: idx, Name: s.Name, Kind: s.Kind, Up: !s.Down})
	for _, a := range s.Addrs {
		w.addrs = append(w.addrs, mobike.Address{Prefix: netip.MustParsePrefix(a), LinkIdx: idx})
	}
	for _, g := range s.Gateways {
		w.gws = append(w.gws, mobike.Gateway{LinkIdx: idx, Via: netip.MustParseAddr(g), Metric: s.Metric, Table: 254})
	}
	lat := s.Latency
	if lat == 0 {
		lat = defaultLatencyMS * time.Millisecond
	}
	w.linkImp[idx] = Impair{Latency: lat}
	return idx
}

func (w *World) link(name string) *mobike.Link {
	for _, l := range w.links {
		if l.Name == name {
			return l
		}
	}
	panic("sim: no link " + name)
}

// NetState is the host's current network snapshot.
func (w *World) NetState() mobike.NetState {
	ns := mobike.NetState{}
	for _, l := range w.links {
		ns.Links = append(ns.Links, *l)
	}
	ns.Addrs = slices.Clone(w.addrs)
	slices.SortFunc(ns.Addrs, func(a, b mobike.Address) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	for _, g := range w.gws {
		if w.linkByIdx(g.LinkIdx).Up {
			ns.Gateways = append(ns.Gateways, g)
		}
	}
	return ns
}

func (w *World) linkByIdx(i int) *mobike.Link {
	for _, l := range w.links {
		if l.Index == i {
			return l
		}
	}
	return nil
}

// netChanged tells the monitor (→ EvNetState) and charon (→ roam).
func (w *World) netChanged(r mobike.NetReason) {
	w.After(MonitorDelay, func() { w.Deliver(mobike.EvNetState{State: w.NetState(), Reasons: []mobike.NetReason{r}}) })
	w.Charon.addressChanged()
}

// SetLinkUp takes a link up or down (carrier).
func (w *World) SetLinkUp(name string, up bool) {
	w.Note("link %s up=%t", name, up)
	w.link(name).Up = up
	r := mobike.NetLinkDown
	if up {
		r = mobike.NetLinkUp
	}
	w.netChanged(r)
}

// AddrOpts are an address's kernel behaviour.
type AddrOpts struct {
	DAD       time.Duration // tentative for this long (IPv6 DAD); 0 = not tentative
	DADFail   bool          // DAD fails instead of completing
	Preferred time.Duration // deprecated after this long; 0 = never
	Valid     time.Duration // removed after this long; 0 = never
}

// AddAddr assigns an address to a link now.
func (w *World) AddAddr(linkName, prefix string, o AddrOpts) {
	l := w.link(linkName)
	pfx := netip.MustParsePrefix(prefix)
	w.Note("addr add %s dev %s", pfx, linkName)
	a := mobike.Address{Prefix: pfx, LinkIdx: l.Index}
	if o.DAD > 0 {
		a.Flags |= mobike.AddrTentative
		w.After(o.DAD, func() {
			if o.DADFail {
				w.Note("dad failed %s", pfx)
				w.setFlags(pfx, mobike.AddrDADFailed, mobike.AddrTentative)
			} else {
				w.Note("dad completed %s", pfx)
				w.setFlags(pfx, 0, mobike.AddrTentative)
			}
		})
	}
	if o.Preferred > 0 {
		w.After(o.Preferred, func() {
			w.Note("addr deprecated %s", pfx)
			w.setFlags(pfx, mobike.AddrDeprecated, 0)
		})
	}
	if o.Valid > 0 {
		w.After(o.Valid, func() { w.DelAddr(pfx.String()) })
	}
	w.addrs = append(w.addrs, a)
	w.netChanged(mobike.NetAddrAdded)
}

func (w *World) setFlags(pfx netip.Prefix, set, clr mobike.AddrFlags) {
	for i := range w.addrs {
		if w.addrs[i].Prefix == pfx {
			w.addrs[i].Flags = w.addrs[i].Flags&^clr | set
		}
	}
	w.netChanged(mobike.NetAddrFlagsChanged)
}

// DelAddr removes an address.
func (w *World) DelAddr(prefix string) {
	pfx := netip.MustParsePrefix(prefix)
	w.Note("addr del %s", pfx)
	w.addrs = slices.DeleteFunc(w.addrs, func(a mobike.Address) bool { return a.Prefix == pfx })
	w.netChanged(mobike.NetAddrRemoved)
}

// SetLinkImpair sets the impairment of every path through a link (keeping
// its base latency).
func (w *World) SetLinkImpair(name string, imp Impair) {
	l := w.link(name)
	base := w.linkImp[l.Index].Latency
	if imp.Latency == 0 {
		imp.Latency = base
	}
	w.Note("impair link %s %+v", name, imp)
	w.linkImp[l.Index] = imp
}

// SetPairImpair sets the impairment of one path, on top of its link's.
func (w *World) SetPairImpair(local, remote string, imp Impair) {
	p := mobike.Pair{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote)}
	w.Note("impair pair %s %+v", p, imp)
	w.pairImp[p] = imp
}

// SetPeerDown makes a peer address stop (or resume) answering.
func (w *World) SetPeerDown(addr string, down bool) {
	a := netip.MustParseAddr(addr)
	w.Note("peer %s down=%t", a, down)
	w.peerDown[a] = down
}

// localUsable reports whether a local address can send: assigned, not
// tentative or dadfailed, on a link that is up. It returns the link.
func (w *World) localUsable(l netip.Addr) (*mobike.Link, bool) {
	for _, a := range w.addrs {
		if a.Prefix.Addr() == l {
			lk := w.linkByIdx(a.LinkIdx)
			return lk, lk.Up && a.Flags&(mobike.AddrTentative|mobike.AddrDADFailed) == 0
		}
	}
	return nil, false
}

// path returns whether a request and a reply get through on p now, the RTT,
// and whether a NAT is on it.
func (w *World) path(p mobike.Pair) (ok bool, rtt time.Duration, nat bool) {
	lk, usable := w.localUsable(p.Local)
	if !usable || w.peerDown[p.Remote] {
		return false, 0, false
	}
	imp := w.linkImp[lk.Index].merge(w.pairImp[p])
	if imp.Blackhole || imp.OneWay {
		return false, 0, imp.NAT
	}
	if imp.Loss > 0 && w.rng.Float64() < imp.Loss {
		return false, 0, imp.NAT
	}
	return true, imp.Latency, imp.NAT
}

// lookup is the kernel's route lookup towards a peer address for charon
// (recipe B: rules honoured): a prohibit rule (host-wide), a host route the
// controller installed, or the default route with the lowest metric.
func (w *World) lookup(r netip.Addr) (netip.Addr, bool) {
	if w.prohibit[r] {
		return netip.Addr{}, false
	}
	if rt, ok := w.routes[r]; ok {
		if _, usable := w.localUsable(rt.Local); usable {
			return rt.Local, true
		}
	}
	best, bestMetric := netip.Addr{}, 0
	for _, g := range w.gws {
		lk := w.linkByIdx(g.LinkIdx)
		if !lk.Up || g.Via.Is4() != r.Is4() || (best.IsValid() && g.Metric >= bestMetric) {
			continue
		}
		for _, a := range w.addrs {
			ip := a.Prefix.Addr()
			if a.LinkIdx == g.LinkIdx && ip.Is4() == r.Is4() && ip.IsGlobalUnicast() &&
				a.Flags&(mobike.AddrTentative|mobike.AddrDADFailed|mobike.AddrDeprecated) == 0 {
				best, bestMetric = ip, g.Metric
				break
			}
		}
	}
	return best, best.IsValid()
}

// ---- prober ----

type prober struct {
	act      mobike.ActProbeStart
	gen      int
	window   []bool
	stats    mobike.PathStats
	interval time.Duration
	// burst is the generation of the confirmation burst in flight (bumped
	// when a reply ends it); burstOut its probes not yet resolved.
	burst    int
	burstOut int
	// burstEnds is when the burst in flight resolves if nothing answers.
	burstEnds time.Time
}

func (w *World) interval(p mobike.ProbeProfile) time.Duration {
	switch p {
	case mobike.ProfileActive:
		return w.pm.Active
	case mobike.ProfileMeteredStandby:
		return MeteredInterval
	}
	return w.pm.Standby
}

func (w *World) startProber(a mobike.ActProbeStart) {
	p, ok := w.probers[a.Pair]
	if !ok {
		p = &prober{}
		w.probers[a.Pair] = p
	}
	p.act = a
	p.gen++
	p.burstOut = 0
	p.interval = w.interval(a.Profile)
	gen := p.gen
	w.After(0, func() { w.probe(p, gen) })
}

// startBurst sends n confirmation probes a third of the timeout apart, the
// first at once, unless a burst is in flight.
func (w *World) startBurst(p *prober, n int) {
	if p.burstOut > 0 {
		return
	}
	p.burst++
	p.burstOut = n
	gen, b := p.gen, p.burst
	gap := w.pm.Timeout / 3
	p.burstEnds = w.Now.Add(time.Duration(n-1)*gap + w.pm.Timeout)
	for i := 0; i < n; i++ {
		w.After(time.Duration(i)*gap, func() {
			if p.gen != gen || p.burst != b {
				return // stopped, or a reply ended the burst
			}
			w.send(p, gen, b)
		})
	}
}

func (w *World) probe(p *prober, gen int) {
	if p.gen != gen {
		return
	}
	sent := w.Now
	w.send(p, gen, 0)
	w.After(p.interval-w.Now.Sub(sent), func() { w.probe(p, gen) })
}

// send sends one probe (of burst b; 0 = a regular probe) and schedules
// its outcome.
func (w *World) send(p *prober, gen, b int) {
	ok, rtt, nat := w.path(p.act.Pair)
	p.stats.Sent++
	done := func() {
		if p.gen != gen {
			return
		}
		if b != 0 && b == p.burst && p.burstOut > 0 {
			p.burstOut--
		}
		p.window = append(p.window, ok)
		if len(p.window) > probeWindow {
			p.window = p.window[1:]
		}
		lost := 0
		for _, x := range p.window {
			if !x {
				lost++
			}
		}
		p.stats.LossRatio = float64(lost) / float64(len(p.window))
		if ok {
			p.stats.Received++
			p.stats.ConsecLost = 0
			if p.stats.SRTT == 0 {
				p.stats.SRTT = rtt
			} else {
				p.stats.SRTT = (7*p.stats.SRTT + rtt) / 8
			}
			p.stats.RTTP50, p.stats.RTTP95 = rtt, rtt
			p.stats.LastReply = w.Now
			p.stats.NAT = mobike.NATNone
			if nat {
				p.stats.NAT = mobike.NATPresent
			}
			if p.burstOut > 0 { // the pair answered: the burst ends
				p.burst++
				p.burstOut = 0
			}
		} else {
			p.stats.ConsecLost++
			if p.stats.ConsecLost == 1 && w.pm.Burst > 0 {
				w.startBurst(p, w.pm.Burst)
			}
		}
		p.stats.RTO = w.pm.Timeout
		// as monitor/probe: a streak longer than the burst is its evidence
		p.stats.Confirming = p.burstOut > 0 && p.stats.ConsecLost <= max(w.pm.Burst, 1)
		p.stats.BurstEnds = time.Time{}
		if p.burstOut > 0 {
			p.stats.BurstEnds = p.burstEnds
		}
		ev := mobike.EvProbeResult{Pair: p.act.Pair, Method: p.act.Method, OK: ok, At: w.Now, Stats: p.stats}
		if ok {
			ev.RTT = rtt
		}
		w.Deliver(ev)
	}
	if ok {
		w.After(rtt, done)
	} else {
		w.After(w.pm.Timeout, done)
	}
}

// Probing reports the profile a pair is probed with ("" = not probed).
func (w *World) Probing(local, remote string) string {
	p, ok := w.probers[mobike.Pair{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote)}]
	if !ok {
		return ""
	}
	return p.act.Profile.String()
}
