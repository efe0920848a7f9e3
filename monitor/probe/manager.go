package probe

import (
	"bytes"
	"container/heap"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Options configure a Manager. Zero values take the documented defaults.
type Options struct {
	Logger *slog.Logger // default: discard
	Clock  Clock        // default: RealClock()

	// STAMPKey switches STAMP probes to authenticated mode (HMAC-SHA-256)
	// with this key; empty = unauthenticated mode.
	STAMPKey []byte
	// STAMPPort is the reflector's UDP port. Default 862.
	STAMPPort uint16

	Profiles Profiles

	// Transports adds or replaces the transport of a probe method (the IKE
	// prober through NewFuncTransport, or an in-memory network in tests).
	// ICMP and STAMP default to real sockets, one per uplink and address
	// family. Close calls Wait on transports that have it.
	Transports map[mobike.ProbeMethod]Transport

	// SocketHook runs the creation of each real socket; a test uses it to
	// create sockets inside a network namespace. nil = call directly.
	SocketHook func(open func() error) error

	// EventBuffer is the capacity of the Events channel. Default 1024.
	// When the consumer falls behind, further events are dropped and
	// counted (Snapshot.EventsDropped); every event carries the pair's
	// cumulative statistics, so the next one catches up.
	EventBuffer int

	// Coalesce is the granularity of the probe scheduler: one timer serves
	// every pair, and it wakes only on multiples of Coalesce (counted from
	// NewManager), serving every send and timeout that fell due since, so
	// that the pairs' probes share wake-ups and leave in one batch per
	// socket. A send or a timeout is late by less than Coalesce; RTTs are
	// not affected (send and receive times are taken per packet). Default
	// 5ms; negative = serve every deadline exactly (tests).
	Coalesce time.Duration
}

// DefaultCoalesce is the default Options.Coalesce.
const DefaultCoalesce = 5 * time.Millisecond

// Manager runs the probers: one per pair, whatever the number of SAs using
// it. It reports every outcome as a mobike.EvProbeResult and takes no
// decisions. One scheduler (a single clock timer) paces every pair.
type Manager struct {
	log        *slog.Logger
	clock      Clock
	prof       Profiles
	coalesce   time.Duration
	epoch      time.Time
	transports map[mobike.ProbeMethod]Transport
	flushers   []Flusher // transports that batch sends
	pollers    []Poller  // transports whose replies the scheduler reads
	events     chan mobike.Event
	dropped    atomic.Uint64
	cbs        sync.WaitGroup // timer and reply callbacks in flight

	mu sync.Mutex // guards the fields below
	// closed is set once by Close; no callback runs after it.
	closed      bool
	probers     map[mobike.Pair]*prober
	uplinkBytes map[string]uint64
	rnd         *rand.Rand

	queue    proberHeap // running probers by their next deadline
	opening  proberHeap // running probers by the opening of their regular probe's window
	slots    []tickSlot // the times regular probes are scheduled at, in order
	timer    Timer      // the scheduler's one pending wake-up; nil = none
	timerAt  time.Time
	timerGen uint64
	round    []roundSend // probes sent since the last flush
	wakeups  uint64      // scheduler wake-ups (for tests and benchmarks)
}

// tickSlot is a time at which n probers send their regular probe.
type tickSlot struct {
	at time.Time
	n  int
}

// roundSend is a probe sent in the current round, stamped at the flush.
type roundSend struct {
	p   *prober
	seq uint32
}

type prober struct {
	path    Path
	method  mobike.ProbeMethod
	profile mobike.ProbeProfile
	tr      Transport

	ep      Endpoint // nil until opened (or after an open failure)
	gen     uint64   // bumped when ep changes; replies of older endpoints are ignored
	openErr bool     // the last Open failed (logged once per failure streak)
	sendErr bool     // the last Send failed
	stopped bool

	seq  uint32
	out  []outstanding // in flight, in send order
	late []outstanding // timed out recently: a reply still proves the pair alive
	st   *pathStats

	nextTick  time.Time // the next regular probe
	tickOpen  time.Time // from then on it may go early, in a round that happens anyway
	oidx      int       // index in Manager.opening; -1 = not queued
	burstLeft int       // confirmation probes still to send
	nextBurst time.Time // when the next one leaves
	burstGap  time.Duration
	// burstBackoff is the backoff at the start of the burst: its probes
	// keep that timeout, so that losses of probes sent before the burst do
	// not stretch the burst's own deadlines (the burst exists to decide
	// quickly; a late reply still proves the pair alive).
	burstBackoff int
	burstRTO     time.Duration // the timeout of the burst's probes
	// longLost counts the losses of the current streak whose probes waited
	// at least burstRTO (awaitingBurst).
	longLost int
	backoff  int // timeouts since the last reply: doublings of the RTO

	due  time.Time // earliest of nextTick, nextBurst, the deadlines in out
	qidx int       // index in Manager.queue; -1 = not queued
}

type outstanding struct {
	seq      uint32
	nonce    [MaxNonceLen]byte
	nlen     uint8
	burst    bool     // a confirmation probe
	loss     lossMark // where its timeout was counted (late list only)
	sent     time.Time
	rto      time.Duration
	deadline time.Time
	// nextPoll is when the scheduler next reads the sockets for this
	// probe's reply (Poller transports only; zero = no more polls before
	// the deadline), pollGap the wait after that.
	nextPoll time.Time
	pollGap  time.Duration
}

// lateKeep is how many timed-out probes a pair remembers for late replies,
// and lateFor how long after its send a late reply still counts.
const (
	lateKeep = 8
	lateFor  = 10 * time.Second
)

// NewManager returns a Manager; it starts no goroutine until the first
// ActProbeStart.
func NewManager(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.STAMPPort == 0 {
		o.STAMPPort = STAMPPort
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.Coalesce == 0 {
		o.Coalesce = DefaultCoalesce
	}
	m := &Manager{
		log:         o.Logger.With("component", "probe"),
		clock:       o.Clock,
		prof:        o.Profiles.withDefaults(),
		coalesce:    max(o.Coalesce, 0),
		transports:  map[mobike.ProbeMethod]Transport{},
		events:      make(chan mobike.Event, o.EventBuffer),
		probers:     map[mobike.Pair]*prober{},
		uplinkBytes: map[string]uint64{},
		rnd:         rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		queue: proberHeap{
			key:  func(p *prober) time.Time { return p.due },
			slot: func(p *prober) *int { return &p.qidx },
		},
		opening: proberHeap{
			key:  func(p *prober) time.Time { return p.tickOpen },
			slot: func(p *prober) *int { return &p.oidx },
		},
	}
	m.epoch = m.clock.Now()
	icmp := newNetTransport(mobike.ProbeICMP, m.clock, m.log, o.SocketHook)
	stamp := newNetTransport(mobike.ProbeSTAMP, m.clock, m.log, o.SocketHook)
	stamp.stampKey = bytes.Clone(o.STAMPKey)
	stamp.stampPort = o.STAMPPort
	stamp.locEvery = m.prof.LocationEvery
	m.transports[mobike.ProbeICMP] = icmp
	m.transports[mobike.ProbeSTAMP] = stamp
	for k, t := range o.Transports {
		m.transports[k] = t
	}
	seen := map[Transport]bool{}
	for _, t := range m.transports {
		if seen[t] {
			continue
		}
		seen[t] = true
		if f, ok := t.(Flusher); ok {
			m.flushers = append(m.flushers, f)
		}
		if p, ok := t.(Poller); ok {
			m.pollers = append(m.pollers, p)
		}
	}
	return m
}

// Events delivers one mobike.EvProbeResult per resolved probe (and one per
// late reply, OK). It is closed by Close.
func (m *Manager) Events() <-chan mobike.Event { return m.events }

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("probe: manager closed")

// ErrNotProbed is returned by Confirm for a pair without a prober.
var ErrNotProbed = errors.New("probe: pair not probed")

// Apply executes ActProbeStart (start, or retune a running prober),
// ActProbeStop and ActProbeConfirm. Other actions are ignored. A pair whose
// socket cannot be opened yet (address or link missing) still runs: its
// probes count as lost and the open is retried at every probe.
func (m *Manager) Apply(a mobike.Action) error {
	if c, ok := a.(mobike.ActProbeConfirm); ok {
		return m.Confirm(c.Pair)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	switch a := a.(type) {
	case mobike.ActProbeStart:
		return m.startLocked(a)
	case mobike.ActProbeStop:
		if p := m.probers[a.Pair]; p != nil {
			m.stopLocked(p)
			delete(m.probers, a.Pair)
			m.armLocked(m.clock.Now())
			m.log.Info("prober stopped", "path", a.Pair.String())
		}
	}
	return nil
}

// Confirm starts a confirmation burst on pair now (the first probe leaves
// at once): Profiles.Burst probes, a third of the pair's timeout apart. The
// core may request it (ActProbeConfirm) for a pair it is about to rely on,
// or when other evidence hints that the pair may have failed; the results
// arrive as usual, with PathStats.Confirming set until the burst has
// resolved. A burst already in flight is left alone.
func (m *Manager) Confirm(pair mobike.Pair) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	p := m.probers[pair]
	if p == nil {
		m.mu.Unlock()
		return fmt.Errorf("confirm %s: %w", pair, ErrNotProbed)
	}
	now := m.clock.Now()
	if !p.confirming() {
		m.startBurstLocked(p, now, max(m.prof.Burst, 1))
		// Only the burst's first probe goes now: timeouts are judged by the
		// scheduler, after it has read the sockets.
		m.sendBurstLocked(p, now)
		m.requeueLocked(p)
	}
	flush := m.stampLocked()
	m.armLocked(now)
	m.mu.Unlock()
	if flush {
		m.flush()
	}
	return nil
}

func (m *Manager) startLocked(a mobike.ActProbeStart) error {
	tr := m.transports[a.Method]
	if tr == nil {
		return fmt.Errorf("probe: start %s: no transport for method %s", a.Pair, a.Method)
	}
	path := Path{Pair: a.Pair, LinkIdx: a.LinkIdx, Uplink: a.Uplink}
	p := m.probers[a.Pair]
	if p == nil {
		p = &prober{path: path, method: a.Method, profile: a.Profile, tr: tr, qidx: -1, oidx: -1,
			st: newPathStats(m.prof.LossWindow, m.prof.RTTWindow)}
		m.probers[a.Pair] = p
		m.log.Info("prober started", "path", a.Pair.String(), "ifname", a.Uplink, "method", a.Method.String(), "profile", a.Profile.String())
	} else {
		if p.path == path && p.method == a.Method && p.profile == a.Profile {
			return nil
		}
		if p.path != path || p.method != a.Method {
			m.closeEndpointLocked(p)
			p.path, p.method, p.tr = path, a.Method, tr
		}
		p.profile = a.Profile
		m.log.Info("prober retuned", "path", a.Pair.String(), "ifname", a.Uplink, "method", a.Method.String(), "profile", a.Profile.String())
	}
	// first probe soon, within a fraction of the interval
	now := m.clock.Now()
	w := time.Duration(m.prof.Jitter * float64(m.prof.Interval(p.profile)) / 2)
	m.scheduleTickLocked(p, now.Add(w), w, now)
	m.requeueLocked(p)
	m.armLocked(now)
	return nil
}

// closeEndpointLocked drops the endpoint and forgets its outstanding probes
// without counting them.
func (m *Manager) closeEndpointLocked(p *prober) {
	p.out, p.late = nil, nil
	p.burstLeft = 0
	if p.ep != nil {
		if err := p.ep.Close(); err != nil {
			m.log.Warn("close probe endpoint", "path", p.path.Pair.String(), "err", err)
		}
		p.ep = nil
	}
	p.gen++
}

func (m *Manager) stopLocked(p *prober) {
	p.stopped = true
	m.dropTickLocked(p)
	if p.qidx >= 0 {
		heap.Remove(&m.queue, p.qidx)
	}
	m.closeEndpointLocked(p)
}

func (m *Manager) emit(evs []mobike.Event) {
	for _, ev := range evs {
		select {
		case m.events <- ev:
		default:
			if m.dropped.Add(1) == 1 {
				m.log.Warn("probe events dropped: consumer too slow")
			}
		}
	}
}

// ---- the scheduler ----

// wakeAt is the scheduler's wake-up time for a deadline: the next multiple
// of the coalescing granularity.
func (m *Manager) wakeAt(due time.Time) time.Time {
	if m.coalesce <= 0 {
		return due
	}
	d := due.Sub(m.epoch)
	if d <= 0 {
		return due
	}
	q := (d + m.coalesce - 1) / m.coalesce
	return m.epoch.Add(q * m.coalesce)
}

// armLocked points the scheduler's one timer at the earliest deadline.
func (m *Manager) armLocked(now time.Time) {
	if m.closed || m.queue.Len() == 0 {
		if m.timer != nil {
			m.timer.Stop()
			m.timer = nil
		}
		return
	}
	at := m.wakeAt(m.queue.head().due)
	if m.timer != nil && m.timerAt.Equal(at) {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	m.timerGen++
	g := m.timerGen
	m.timerAt = at
	m.timer = m.clock.AfterFunc(at.Sub(now), func() { m.wake(g) })
}

// wake serves everything due: timeouts, regular probes, burst probes.
func (m *Manager) wake(g uint64) {
	m.mu.Lock()
	if m.closed || g != m.timerGen {
		m.mu.Unlock()
		return
	}
	m.cbs.Add(1)
	defer m.cbs.Done()
	m.timer = nil
	m.wakeups++
	m.mu.Unlock()
	// Read the replies that arrived since the last round before judging
	// any timeout (kernel timestamps keep their RTTs exact).
	for _, p := range m.pollers {
		p.Poll()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	now := m.clock.Now()
	var evs []mobike.Event
	for m.queue.Len() > 0 && !m.queue.head().due.After(now) {
		evs = m.serviceLocked(m.queue.head(), now, evs)
	}
	// Ride along: when this is a round of sends, a later round all of whose
	// probers' windows have opened goes now instead of waking the scheduler
	// again (standby pairs join the active pairs' rounds this way, and
	// rounds merge). A round goes whole or not at all.
	if len(m.round) > 0 {
		open := map[time.Time][]*prober{}
		for m.opening.Len() > 0 && !m.opening.head().tickOpen.After(now) {
			p := heap.Pop(&m.opening).(*prober)
			open[p.nextTick] = append(open[p.nextTick], p)
		}
		for at, ps := range open {
			if len(ps) < m.slotSize(at) {
				for _, p := range ps { // the rest of their round is not ready
					heap.Push(&m.opening, p)
				}
				continue
			}
			for _, p := range ps {
				m.dropTickLocked(p)
				p.nextTick = now // due: serviceLocked sends it and schedules the next
				evs = m.serviceLocked(p, now, evs)
			}
		}
	}
	flush := m.stampLocked()
	m.armLocked(now)
	m.mu.Unlock()
	if flush {
		m.flush()
	}
	m.emit(evs)
}

// serviceLocked resolves p's expired probes, sends its due regular and
// burst probes, and requeues it at its next deadline.
func (m *Manager) serviceLocked(p *prober, now time.Time, evs []mobike.Event) []mobike.Event {
	// Timeouts, oldest deadline first, so that the streak and the burst
	// evolve in the order the losses happened.
	for {
		i := -1
		for j := range p.out {
			if !p.out[j].deadline.After(now) && (i < 0 || p.out[j].deadline.Before(p.out[i].deadline)) {
				i = j
			}
		}
		if i < 0 {
			break
		}
		o := p.out[i]
		p.out = slices.Delete(p.out, i, i+1)
		o.loss = p.st.onLoss()
		p.remember(o)
		if m.prof.Timeout == 0 {
			p.backoff++
		}
		if p.st.consec == 1 && m.prof.Burst > 0 && !p.confirming() {
			// the first miss of a streak: confirm at once instead of
			// waiting for the next intervals
			m.startBurstLocked(p, o.deadline, m.prof.Burst)
		}
		if o.rto >= p.burstRTO {
			p.longLost++
		}
		evs = append(evs, m.resultLocked(p, false, 0, now))
	}
	if !p.nextTick.After(now) {
		m.sendLocked(p, now, false)
		iv := m.prof.pacedInterval(p.profile, p.st.consec)
		next := p.nextTick.Add(iv)
		if !next.After(now) { // fell behind (a stalled machine): no catch-up volley
			next = now.Add(iv)
		}
		m.scheduleTickLocked(p, next, time.Duration(m.prof.Jitter*float64(iv)), now.Add(1))
	}
	m.sendBurstLocked(p, now)
	// this round read the sockets: move each due poll to the next one
	for i := range p.out {
		o := &p.out[i]
		for !o.nextPoll.IsZero() && !o.nextPoll.After(now) {
			o.nextPoll = o.nextPoll.Add(o.pollGap)
			o.pollGap = min(2*o.pollGap, maxPollGapQuanta*m.pollQuantum())
			if !o.nextPoll.Before(o.deadline) {
				o.nextPoll = time.Time{} // the timeout's round reads them anyway
			}
		}
	}
	m.requeueLocked(p)
	return evs
}

// maxPollGapQuanta bounds the growth of the wait between two reads for a
// late reply.
const maxPollGapQuanta = 8

// pollQuantum is the smallest wait between two reads of the sockets.
func (m *Manager) pollQuantum() time.Duration {
	return max(m.coalesce, time.Millisecond)
}

// firstPoll is when a reply to a probe sent at sent on p is first looked
// for: at the early end of the pair's RTT estimate (SRTT − 2×RTTVAR), but
// not before one quantum.
func (m *Manager) firstPoll(p *prober, sent time.Time) time.Time {
	d := m.pollQuantum()
	if p.st.haveRTT {
		d = max(d, p.st.srtt-2*p.st.rttvar)
	}
	return sent.Add(d)
}

// scheduleTickLocked sets p's next regular probe within ±w of nominal, and
// not before notBefore. It joins the round the most other pairs are already scheduled
// for in that window, so that pairs converge on shared rounds: one wake-up
// and one batch of sends for many pairs, and one read of their replies. With
// no round in the window it opens one at nominal jittered uniformly by ±w,
// so rounds stay spread as the jitter intends (rounds, not pairs, are what
// keep a host's probes from synchronising with other hosts').
func (m *Manager) scheduleTickLocked(p *prober, nominal time.Time, w time.Duration, notBefore time.Time) {
	m.dropTickLocked(p)
	lo, hi := nominal.Add(-w), nominal.Add(w)
	if lo.Before(notBefore) {
		lo = notBefore
	}
	best := -1
	i, _ := slices.BinarySearchFunc(m.slots, lo, func(s tickSlot, t time.Time) int { return s.at.Compare(t) })
	for ; i < len(m.slots) && !m.slots[i].at.After(hi); i++ {
		if best < 0 || m.slots[i].n > m.slots[best].n {
			best = i
		}
	}
	var at time.Time
	if best >= 0 {
		at = m.slots[best].at
		m.slots[best].n++
	} else {
		at = nominal
		if w > 0 {
			at = nominal.Add(time.Duration((2*m.rnd.Float64() - 1) * float64(w)))
		}
		if at.Before(lo) {
			at = lo
		}
		j, found := slices.BinarySearchFunc(m.slots, at, func(s tickSlot, t time.Time) int { return s.at.Compare(t) })
		if found {
			m.slots[j].n++
		} else {
			m.slots = slices.Insert(m.slots, j, tickSlot{at: at, n: 1})
		}
	}
	p.nextTick = at
	if lo.Before(at) {
		p.tickOpen = lo
		heap.Push(&m.opening, p)
	}
}

// slotSize is the number of probers scheduled at at.
func (m *Manager) slotSize(at time.Time) int {
	j, found := slices.BinarySearchFunc(m.slots, at, func(s tickSlot, t time.Time) int { return s.at.Compare(t) })
	if !found {
		return 0
	}
	return m.slots[j].n
}

// dropTickLocked takes p's scheduled regular probe out of its round.
func (m *Manager) dropTickLocked(p *prober) {
	if p.oidx >= 0 {
		heap.Remove(&m.opening, p.oidx)
	}
	if p.nextTick.IsZero() {
		return
	}
	j, found := slices.BinarySearchFunc(m.slots, p.nextTick, func(s tickSlot, t time.Time) int { return s.at.Compare(t) })
	if found {
		if m.slots[j].n--; m.slots[j].n <= 0 {
			m.slots = slices.Delete(m.slots, j, j+1)
		}
	}
	p.nextTick = time.Time{}
}

// sendBurstLocked sends the confirmation probes due at now.
func (m *Manager) sendBurstLocked(p *prober, now time.Time) {
	for p.burstLeft > 0 && !p.nextBurst.After(now) {
		p.burstLeft--
		m.sendLocked(p, now, true)
		p.nextBurst = p.nextBurst.Add(p.burstGap)
	}
}

// startBurstLocked schedules n confirmation probes from at.
func (m *Manager) startBurstLocked(p *prober, at time.Time, n int) {
	p.burstLeft = n
	p.nextBurst = at
	p.burstBackoff = p.backoff
	p.burstRTO = m.prof.timeout(p.st.srtt, p.st.rttvar, p.st.haveRTT, p.backoff)
	p.burstGap = m.prof.burstGap(m.prof.baseTimeout(p.st.srtt, p.st.rttvar, p.st.haveRTT))
}

// endBurstLocked cancels the rest of a burst: the pair answered.
func (m *Manager) endBurstLocked(p *prober) {
	p.burstLeft = 0
	for i := range p.out {
		p.out[i].burst = false
	}
}

// confirming reports whether a confirmation burst is in flight.
func (p *prober) confirming() bool {
	if p.burstLeft > 0 {
		return true
	}
	for _, o := range p.out {
		if o.burst {
			return true
		}
	}
	return false
}

// awaitingBurst reports whether p's losses still wait for the evidence of a
// burst in flight (PathStats.Confirming): a burst is in flight and the
// streak holds no more than Burst losses of probes that waited at least as
// long as the burst's (longLost). More such losses in a row are at least the
// evidence the burst would give, so the verdict need not wait for the
// burst's last deadline: with short intervals the regular probes reach it
// first. Losses of probes with shorter timeouts (sent before the streak
// backed the timeout off) do not count: a pair whose RTT just grew past
// them must keep the time the burst gives its late replies.
func (m *Manager) awaitingBurst(p *prober) bool {
	return p.confirming() && p.longLost <= max(m.prof.Burst, 1)
}

// burstEnds is when p's burst in flight resolves if the pair stays silent:
// the deadline of its last probe, sent or still to send; zero without one.
func (p *prober) burstEnds() time.Time {
	var end time.Time
	for _, o := range p.out {
		if o.burst && o.deadline.After(end) {
			end = o.deadline
		}
	}
	if p.burstLeft > 0 {
		if last := p.nextBurst.Add(time.Duration(p.burstLeft-1) * p.burstGap).Add(p.burstRTO); last.After(end) {
			end = last
		}
	}
	return end
}

// remember keeps a timed-out probe for a late reply.
func (p *prober) remember(o outstanding) {
	if len(p.late) == lateKeep {
		p.late = slices.Delete(p.late, 0, 1)
	}
	p.late = append(p.late, o)
}

// requeueLocked recomputes p's next deadline and its place in the queue.
func (m *Manager) requeueLocked(p *prober) {
	if p.stopped {
		return
	}
	due := p.nextTick
	if p.burstLeft > 0 && p.nextBurst.Before(due) {
		due = p.nextBurst
	}
	for _, o := range p.out {
		if o.deadline.Before(due) {
			due = o.deadline
		}
		if !o.nextPoll.IsZero() && o.nextPoll.Before(due) {
			due = o.nextPoll
		}
	}
	p.due = due
	if p.qidx < 0 {
		heap.Push(&m.queue, p)
	} else {
		heap.Fix(&m.queue, p.qidx)
	}
}

func (m *Manager) sendLocked(p *prober, now time.Time, burst bool) {
	if p.ep == nil {
		gen := p.gen
		ep, err := p.tr.Open(p.path, func(r Reply) { m.deliver(p, gen, r) })
		if err != nil {
			if !p.openErr {
				m.log.Warn("open probe socket", "path", p.path.Pair.String(), "ifname", p.path.Uplink, "err", err)
			}
			p.openErr = true
		} else {
			p.ep, p.openErr = ep, false
		}
	}
	backoff := p.backoff
	if burst {
		backoff = min(backoff, p.burstBackoff)
	}
	o := outstanding{seq: p.seq, burst: burst, sent: now,
		rto: m.prof.timeout(p.st.srtt, p.st.rttvar, p.st.haveRTT, backoff)}
	o.deadline = now.Add(o.rto)
	if _, polled := p.tr.(Poller); polled {
		o.nextPoll, o.pollGap = m.firstPoll(p, now), m.pollQuantum()
	}
	p.seq++
	n := 0
	if p.ep != nil {
		o.nlen = uint8(min(p.ep.NonceLen(), MaxNonceLen))
		nonce := o.nonce[:o.nlen]
		crand.Read(nonce)
		var err error
		n, err = p.ep.Send(o.seq, nonce)
		if err != nil && !p.sendErr {
			m.log.Warn("send probe", "path", p.path.Pair.String(), "ifname", p.path.Uplink, "err", err)
		}
		p.sendErr = err != nil
		m.round = append(m.round, roundSend{p: p, seq: o.seq})
	}
	p.st.onSent(n)
	m.uplinkBytes[p.path.Uplink] += uint64(n)
	p.out = append(p.out, o)
}

// stampLocked stamps the round's probes with the time they leave, just
// before the batching transports send them (flush, called once the lock is
// released, so that replies arriving meanwhile are not held up). It reports
// whether there is anything to flush.
func (m *Manager) stampLocked() bool {
	if len(m.round) == 0 {
		return false
	}
	flush := len(m.flushers) > 0
	if flush {
		t := m.clock.Now()
		for _, rs := range m.round {
			for i := range rs.p.out {
				if o := &rs.p.out[i]; o.seq == rs.seq {
					o.sent, o.deadline = t, t.Add(o.rto)
					if !o.nextPoll.IsZero() {
						o.nextPoll = m.firstPoll(rs.p, t)
					}
				}
			}
		}
	}
	clear(m.round)
	m.round = m.round[:0]
	return flush
}

// flush has the batching transports send the queued probes.
func (m *Manager) flush() {
	for _, f := range m.flushers {
		f.Flush()
	}
}

// deliver is called by transports when a reply for p arrives.
func (m *Manager) deliver(p *prober, gen uint64, r Reply) {
	m.mu.Lock()
	if m.closed || p.stopped || p.gen != gen {
		m.mu.Unlock()
		return
	}
	m.cbs.Add(1)
	defer m.cbs.Done()
	match := func(o outstanding) bool {
		return uint16(o.seq) == uint16(r.Seq) && bytes.Equal(o.nonce[:o.nlen], r.Nonce)
	}
	late := false
	var o outstanding
	if i := slices.IndexFunc(p.out, match); i >= 0 {
		o = p.out[i]
		p.out = slices.Delete(p.out, i, i+1)
	} else if i := slices.IndexFunc(p.late, match); i >= 0 && r.At.Sub(p.late[i].sent) < lateFor {
		o, late = p.late[i], true
		p.late = slices.Delete(p.late, i, i+1)
	} else {
		m.mu.Unlock() // duplicate, forged, or too late
		return
	}
	rtt := r.At.Sub(o.sent)
	if r.Remote > 0 && r.Remote < rtt {
		rtt -= r.Remote
	}
	rtt = max(rtt, 0)
	m.endBurstLocked(p)
	p.backoff, p.longLost = 0, 0 // the streak ends (a late reply too)
	backedOff := m.prof.BackoffAfter > 0 && p.st.consec >= m.prof.BackoffAfter
	if late {
		p.st.onLateReply(rtt, r.At, o.loss)
	} else {
		p.st.onReply(rtt, r.At)
	}
	now := m.clock.Now()
	if backedOff {
		// The pair answers again: leave the dead-pair backoff at once, so a
		// recovered pair is confirmed within one interval, not one backed-off
		// interval (up to BackoffMax) later.
		iv := m.prof.pacedInterval(p.profile, 0)
		m.scheduleTickLocked(p, now.Add(iv), time.Duration(m.prof.Jitter*float64(iv)), now.Add(1))
	}
	if r.NAT != mobike.NATUnknown {
		if p.st.nat != r.NAT {
			m.log.Info("nat verdict", "path", p.path.Pair.String(), "nat", r.NAT.String())
		}
		p.st.nat = r.NAT
	}
	ev := m.resultLocked(p, true, rtt, r.At)
	m.requeueLocked(p)
	m.armLocked(now)
	m.mu.Unlock()
	m.emit([]mobike.Event{ev})
}

func (m *Manager) statsLocked(p *prober) mobike.PathStats {
	ps := p.st.snapshot()
	ps.RTO = m.prof.timeout(p.st.srtt, p.st.rttvar, p.st.haveRTT, p.backoff)
	ps.Confirming = m.awaitingBurst(p)
	ps.BurstEnds = p.burstEnds()
	return ps
}

func (m *Manager) resultLocked(p *prober, ok bool, rtt time.Duration, at time.Time) mobike.Event {
	return mobike.EvProbeResult{Pair: p.path.Pair, Method: p.method, OK: ok, RTT: rtt, At: at, Stats: m.statsLocked(p)}
}

// PairStats is one prober's state in a Snapshot.
type PairStats struct {
	Pair    mobike.Pair
	Method  mobike.ProbeMethod
	Profile mobike.ProbeProfile
	Uplink  string
	LinkIdx int
	Stats   mobike.PathStats
}

// Snapshot is the Manager's state for metrics.
type Snapshot struct {
	Pairs         []PairStats       // sorted by local, then remote address
	UplinkBytes   map[string]uint64 // probe octets sent per uplink, headers included
	EventsDropped uint64
	Wakeups       uint64 // scheduler wake-ups since the start
}

// Stats returns a snapshot of every prober and the bytes sent per uplink.
func (m *Manager) Stats() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{UplinkBytes: make(map[string]uint64, len(m.uplinkBytes)), EventsDropped: m.dropped.Load(), Wakeups: m.wakeups}
	for k, v := range m.uplinkBytes {
		s.UplinkBytes[k] = v
	}
	for _, p := range m.probers {
		s.Pairs = append(s.Pairs, PairStats{Pair: p.path.Pair, Method: p.method, Profile: p.profile,
			Uplink: p.path.Uplink, LinkIdx: p.path.LinkIdx, Stats: m.statsLocked(p)})
	}
	slices.SortFunc(s.Pairs, func(a, b PairStats) int {
		if c := a.Pair.Local.Compare(b.Pair.Local); c != 0 {
			return c
		}
		return a.Pair.Remote.Compare(b.Pair.Remote)
	})
	return s
}

// Close stops every prober (closing their sockets), waits for callbacks to
// finish and closes the Events channel.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for pair, p := range m.probers {
		m.stopLocked(p)
		delete(m.probers, pair)
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.mu.Unlock()
	m.cbs.Wait()
	for _, t := range m.transports {
		if w, ok := t.(interface{ Wait() }); ok {
			w.Wait()
		}
	}
	close(m.events)
	return nil
}

// proberHeap is a min-heap of probers by a time (key); each prober keeps
// its index in the heap (slot), -1 when not queued, so that it can be fixed
// or removed in place. The Manager has two: by next deadline and by the
// opening of the regular probe's window.
type proberHeap struct {
	ps   []*prober
	key  func(*prober) time.Time
	slot func(*prober) *int
}

func (q *proberHeap) Len() int           { return len(q.ps) }
func (q *proberHeap) Less(i, j int) bool { return q.key(q.ps[i]).Before(q.key(q.ps[j])) }
func (q *proberHeap) Swap(i, j int) {
	q.ps[i], q.ps[j] = q.ps[j], q.ps[i]
	*q.slot(q.ps[i]), *q.slot(q.ps[j]) = i, j
}
func (q *proberHeap) Push(x any) {
	p := x.(*prober)
	*q.slot(p) = len(q.ps)
	q.ps = append(q.ps, p)
}
func (q *proberHeap) Pop() any {
	n := len(q.ps) - 1
	p := q.ps[n]
	q.ps[n] = nil
	q.ps = q.ps[:n]
	*q.slot(p) = -1
	return p
}

// head is the heap's first prober; the heap must not be empty.
func (q *proberHeap) head() *prober { return q.ps[0] }
