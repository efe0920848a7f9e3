package probe

import (
	"bytes"
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
	// ICMP and STAMP default to real sockets bound to the pair's source
	// address and uplink. Close calls Wait on transports that have it.
	Transports map[mobike.ProbeMethod]Transport

	// SocketHook runs the creation of each real socket; a test uses it to
	// create sockets inside a network namespace. nil = call directly.
	SocketHook func(open func() error) error

	// EventBuffer is the capacity of the Events channel. Default 1024.
	// When the consumer falls behind, further events are dropped and
	// counted (Snapshot.EventsDropped); every event carries the pair's
	// cumulative statistics, so the next one catches up.
	EventBuffer int
}

// Manager runs the probers: one per pair, whatever the number of SAs using
// it. It reports every outcome as a mobike.EvProbeResult and takes no
// decisions.
type Manager struct {
	log        *slog.Logger
	clock      Clock
	prof       Profiles
	transports map[mobike.ProbeMethod]Transport
	owned      []*netTransport // default transports, closed by Close
	events     chan mobike.Event
	dropped    atomic.Uint64
	cbs        sync.WaitGroup // timer and reply callbacks in flight

	mu sync.Mutex // guards the fields below
	// closed is set once by Close; no callback runs after it.
	closed      bool
	probers     map[mobike.Pair]*prober
	uplinkBytes map[string]uint64
	rnd         *rand.Rand
}

type prober struct {
	path    Path
	method  mobike.ProbeMethod
	profile mobike.ProbeProfile
	tr      Transport

	ep      Endpoint // nil until opened (or after an open failure)
	gen     uint64   // bumped when ep changes; replies of older endpoints are ignored
	tickGen uint64   // bumped per scheduled tick; a superseded tick does nothing
	openErr bool     // the last Open failed (logged once per failure streak)
	sendErr bool     // the last Send failed
	stopped bool

	seq  uint32
	out  []outstanding
	st   *pathStats
	tick Timer
	// burst holds the pending confirmation probes of the current loss streak.
	burst []Timer
}

type outstanding struct {
	seq   uint32
	nonce []byte
	sent  time.Time
	timer Timer
}

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
	m := &Manager{
		log:         o.Logger.With("component", "probe"),
		clock:       o.Clock,
		prof:        o.Profiles.withDefaults(),
		transports:  map[mobike.ProbeMethod]Transport{},
		events:      make(chan mobike.Event, o.EventBuffer),
		probers:     map[mobike.Pair]*prober{},
		uplinkBytes: map[string]uint64{},
		rnd:         rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	icmp := newNetTransport(mobike.ProbeICMP, m.clock, m.log, o.SocketHook)
	stamp := newNetTransport(mobike.ProbeSTAMP, m.clock, m.log, o.SocketHook)
	stamp.stampKey = bytes.Clone(o.STAMPKey)
	stamp.stampPort = o.STAMPPort
	stamp.locEvery = m.prof.LocationEvery
	m.owned = []*netTransport{icmp, stamp}
	m.transports[mobike.ProbeICMP] = icmp
	m.transports[mobike.ProbeSTAMP] = stamp
	for k, t := range o.Transports {
		m.transports[k] = t
	}
	return m
}

// Events delivers one mobike.EvProbeResult per resolved probe. It is closed
// by Close.
func (m *Manager) Events() <-chan mobike.Event { return m.events }

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("probe: manager closed")

// Apply executes ActProbeStart (start, or retune a running prober) and
// ActProbeStop. Other actions are ignored. A pair whose socket cannot be
// opened yet (address or link missing) still runs: its probes count as lost
// and the open is retried at every probe.
func (m *Manager) Apply(a mobike.Action) error {
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
			m.log.Info("prober stopped", "path", a.Pair.String())
		}
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
		p = &prober{path: path, method: a.Method, profile: a.Profile, tr: tr,
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
	// first probe soon, spread over a fraction of the interval
	d := time.Duration(m.rnd.Float64() * m.prof.Jitter * float64(m.prof.Interval(p.profile)))
	m.scheduleTickLocked(p, d)
	return nil
}

// scheduleTickLocked (re)schedules p's next probe d from now, superseding
// the pending one.
func (m *Manager) scheduleTickLocked(p *prober, d time.Duration) {
	if p.tick != nil {
		p.tick.Stop()
	}
	p.tickGen++
	g := p.tickGen
	p.tick = m.after(d, func() []mobike.Event {
		if p.tickGen != g {
			return nil
		}
		return m.tickLocked(p)
	})
}

// closeEndpointLocked drops the endpoint and forgets its outstanding probes
// without counting them.
func (m *Manager) closeEndpointLocked(p *prober) {
	for _, o := range p.out {
		o.timer.Stop()
	}
	p.out = nil
	for _, t := range p.burst {
		t.Stop()
	}
	p.burst = nil
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
	if p.tick != nil {
		p.tick.Stop()
	}
	m.closeEndpointLocked(p)
}

// after schedules f on the clock; f runs with m.mu held and returns events
// to emit once the lock is released.
func (m *Manager) after(d time.Duration, f func() []mobike.Event) Timer {
	run := func() {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		m.cbs.Add(1)
		defer m.cbs.Done()
		evs := f()
		m.mu.Unlock()
		m.emit(evs)
	}
	return m.clock.AfterFunc(d, run)
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

func (m *Manager) tickLocked(p *prober) []mobike.Event {
	if p.stopped {
		return nil
	}
	m.scheduleTickLocked(p, m.prof.nextInterval(p.profile, p.st.consec, m.rnd))
	m.sendLocked(p)
	return nil
}

func (m *Manager) sendLocked(p *prober) {
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
	seq := p.seq
	p.seq++
	var nonce []byte
	n := 0
	if p.ep != nil {
		nonce = make([]byte, p.ep.NonceLen())
		crand.Read(nonce)
		var err error
		n, err = p.ep.Send(seq, nonce)
		if err != nil && !p.sendErr {
			m.log.Warn("send probe", "path", p.path.Pair.String(), "ifname", p.path.Uplink, "err", err)
		}
		p.sendErr = err != nil
	}
	p.st.onSent(n)
	m.uplinkBytes[p.path.Uplink] += uint64(n)
	o := outstanding{seq: seq, nonce: nonce, sent: m.clock.Now()}
	o.timer = m.after(m.prof.timeout(p.st.srtt), func() []mobike.Event { return m.timeoutLocked(p, seq) })
	p.out = append(p.out, o)
}

func (m *Manager) timeoutLocked(p *prober, seq uint32) []mobike.Event {
	if p.stopped {
		return nil
	}
	i := slices.IndexFunc(p.out, func(o outstanding) bool { return o.seq == seq })
	if i < 0 {
		return nil
	}
	p.out = slices.Delete(p.out, i, i+1)
	p.st.onLoss()
	if p.st.consec == 1 && m.prof.Burst > 0 {
		// confirm the loss at once instead of waiting for the next interval
		m.sendLocked(p)
		for k := 1; k < m.prof.Burst; k++ {
			p.burst = append(p.burst, m.after(time.Duration(k)*m.prof.BurstGap, func() []mobike.Event {
				if !p.stopped {
					m.sendLocked(p)
				}
				return nil
			}))
		}
	}
	return []mobike.Event{m.resultLocked(p, false, 0, m.clock.Now())}
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
	i := slices.IndexFunc(p.out, func(o outstanding) bool {
		return uint16(o.seq) == uint16(r.Seq) && bytes.Equal(o.nonce, r.Nonce)
	})
	if i < 0 {
		m.mu.Unlock() // late, duplicate or forged
		return
	}
	o := p.out[i]
	p.out = slices.Delete(p.out, i, i+1)
	o.timer.Stop()
	rtt := r.At.Sub(o.sent)
	if r.Remote > 0 && r.Remote < rtt {
		rtt -= r.Remote
	}
	rtt = max(rtt, 0)
	if p.st.consec > 0 {
		for _, t := range p.burst {
			t.Stop()
		}
		p.burst = nil
	}
	backedOff := m.prof.BackoffAfter > 0 && p.st.consec >= m.prof.BackoffAfter
	p.st.onReply(rtt, r.At)
	if backedOff {
		// The pair answers again: leave the dead-pair backoff at once, so a
		// recovered pair is confirmed within one interval, not one backed-off
		// interval (up to BackoffMax) later.
		m.scheduleTickLocked(p, m.prof.nextInterval(p.profile, 0, m.rnd))
	}
	if r.NAT != mobike.NATUnknown {
		if p.st.nat != r.NAT {
			m.log.Info("nat verdict", "path", p.path.Pair.String(), "nat", r.NAT.String())
		}
		p.st.nat = r.NAT
	}
	ev := m.resultLocked(p, true, rtt, r.At)
	m.mu.Unlock()
	m.emit([]mobike.Event{ev})
}

func (m *Manager) resultLocked(p *prober, ok bool, rtt time.Duration, at time.Time) mobike.Event {
	return mobike.EvProbeResult{Pair: p.path.Pair, Method: p.method, OK: ok, RTT: rtt, At: at, Stats: p.st.snapshot()}
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
}

// Stats returns a snapshot of every prober and the bytes sent per uplink.
func (m *Manager) Stats() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{UplinkBytes: make(map[string]uint64, len(m.uplinkBytes)), EventsDropped: m.dropped.Load()}
	for k, v := range m.uplinkBytes {
		s.UplinkBytes[k] = v
	}
	for _, p := range m.probers {
		s.Pairs = append(s.Pairs, PairStats{Pair: p.path.Pair, Method: p.method, Profile: p.profile,
			Uplink: p.path.Uplink, LinkIdx: p.path.LinkIdx, Stats: p.st.snapshot()})
	}
	slices.SortFunc(s.Pairs, func(a, b PairStats) int {
		if c := a.Pair.Local.Compare(b.Pair.Local); c != 0 {
			return c
		}
		return a.Pair.Remote.Compare(b.Pair.Remote)
	})
	return s
}

// Close stops every prober, waits for callbacks and socket readers to finish
// and closes the Events channel.
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
	m.mu.Unlock()
	m.cbs.Wait()
	for _, t := range m.owned {
		t.wait()
	}
	for _, t := range m.transports {
		if w, ok := t.(interface{ Wait() }); ok {
			w.Wait()
		}
	}
	close(m.events)
	return nil
}
