// Package monitor watches the host's links, addresses and routes through
// netlink and turns them into mobike.EvNetState events.
//
// Notifications are only hints: a burst of them is debounced, then links,
// addresses and routes are read again in full, classified by Build into an
// immutable, sorted mobike.NetState and compared with the last state by Diff.
// The monitor resynchronises from scratch (new subscriptions and a full read)
// on start, when a dump was interrupted, when the receive buffer overflowed
// and on any socket error. Links that must never be an uplink (loopback,
// charon's ipsec0 TUN, xfrm/vti/gre/tun and other tunnels), charon's virtual
// IPs and addresses that can never be available (RFC 4621 §2) are left out.
//
// Events are coalesced: a slow consumer only ever gets the newest snapshot,
// with the reasons it differs from the last snapshot it received, so memory
// stays bounded however fast the kernel changes.
package monitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/mobiked/mobiked/mobike"
)

// Implementation constants.
const (
	// DefaultDebounce is how long the monitor collects notifications before
	// it re-reads: long enough to fold the several messages of one change
	// (an address brings its routes, a link its addresses), short against
	// charon's own 100 ms roam delay.
	DefaultDebounce = 50 * time.Millisecond

	// dumpAttempts is how often a full read is retried at once when the
	// kernel flags it as interrupted (NLM_F_DUMP_INTR) before the monitor
	// falls back to retrying after retryMin.
	dumpAttempts = 5

	// retryMin and retryMax bound the back-off between failed subscriptions,
	// failed reads and repeated resubscriptions, so that a broken socket
	// cannot make the monitor spin. The first resubscription after a stable
	// period is immediate.
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second

	// stableAfter is how long a subscription must last before the back-off
	// starts again from zero.
	stableAfter = 30 * time.Second

	// readDuty bounds the share of time the monitor spends reading during a
	// long burst of changes: after a read that took d, the next one waits at
	// least readDuty×d. A full read of 10 000 addresses takes tens of
	// milliseconds and competes with the kernel for the RTNL lock; with
	// ordinary host states (a read well under a millisecond) only the
	// debounce counts. maxThrottle caps that wait so that a change is seen
	// within about a second however slow reads get.
	readDuty    = 4
	maxThrottle = time.Second

	// receiveBuffer is the receive buffer of each subscription socket: room
	// for about ten thousand notifications, so that ordinary bursts do not
	// overflow (an overflow still only costs a resync).
	receiveBuffer = 8 << 20
)

// ErrSubscriptionClosed reports that the kernel side of a subscription went
// away without an error callback.
var ErrSubscriptionClosed = errors.New("monitor: subscription closed")

// Options configure a Monitor. The zero value watches the current network
// namespace with the defaults.
type Options struct {
	// Logger receives state transitions and errors. Default: discard.
	Logger *slog.Logger
	// Debounce is how long notifications are collected before a re-read.
	// Default: DefaultDebounce.
	Debounce time.Duration
	// IgnoreTables are routing tables whose default routes are not uplink
	// gateways, for example the tables mobiked owns. Charon's table 220 and
	// the local table are always ignored.
	IgnoreTables []int
	// IgnoreLinks are interface names that are never uplinks, in addition
	// to loopback, tunnels and charon's ipsec0.
	IgnoreLinks []string
	// NetNS is the network namespace to watch. Nil: the current one. The
	// caller keeps ownership of the handle and must keep it open while the
	// monitor runs.
	NetNS *netns.NsHandle
	// Sysfs reads the uevent DEVTYPE and wireless flag of a link. Default:
	// ReadSysfs (sysfs of the current mount namespace, checked against the
	// link's index).
	Sysfs SysfsKind

	// source replaces netlink in tests.
	source source
	// receiveBuffer overrides the subscription socket buffer in tests.
	receiveBuffer int
}

// source is the kernel side of the monitor: notifications and full reads.
type source interface {
	// subscribe starts watching. hint is called for every notification and
	// fail when the subscription broke; both may be called from other
	// goroutines until stop returns.
	subscribe(hint func(), fail func(error)) (stop func(), err error)
	// dump reads links, addresses and routes in full. An error wrapping
	// netlink.ErrDumpInterrupted (errInterrupted) means the read may be
	// inconsistent and should be repeated.
	dump() (Raw, error)
	close()
}

// Monitor watches links, addresses and routes. Create it with New, run it
// with Run and read Events.
type Monitor struct {
	// Static after New.
	log      *slog.Logger
	debounce time.Duration
	rules    Rules
	opts     Options
	events   chan mobike.Event
	notify   chan struct{} // cap 1: a new state was published
	running  atomic.Bool

	mu sync.Mutex // guards the fields below
	// latest is the newest state built; it is never modified after it is
	// stored.
	latest mobike.NetState
	// resyncPending says the next event must carry NetResync.
	resyncPending bool
	// stats
	resyncs, reads uint64
	readTime       time.Duration
	subscribed     bool
}

// New creates a Monitor. It does not touch the kernel until Run.
func New(opts Options) (*Monitor, error) {
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("monitor: new: negative debounce %v", opts.Debounce)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Sysfs == nil {
		opts.Sysfs = ReadSysfs
	}
	for _, t := range opts.IgnoreTables {
		if t < 0 {
			return nil, fmt.Errorf("monitor: new: invalid table %d", t)
		}
	}
	return &Monitor{
		log:      opts.Logger.With("component", "monitor"),
		debounce: opts.Debounce,
		rules:    Rules{IgnoreTables: append([]int(nil), opts.IgnoreTables...), IgnoreLinks: append([]string(nil), opts.IgnoreLinks...)},
		opts:     opts,
		events:   make(chan mobike.Event),
		notify:   make(chan struct{}, 1),
	}, nil
}

// Events returns the channel of mobike.EvNetState events. It is unbuffered
// and coalescing: while the consumer is busy only the newest state is kept,
// and the event it then gets carries the reasons that state differs from the
// last one it received. The first event carries NetResync. The channel is
// closed when Run returns. Receivers must not modify the events' slices.
func (m *Monitor) Events() <-chan mobike.Event { return m.events }

// Snapshot returns a copy of the newest state (empty before the first read).
func (m *Monitor) Snapshot() mobike.NetState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Clone(m.latest)
}

// Stats are counters for metrics and tests.
type Stats struct {
	Reads    uint64        // full reads that produced a state
	Resyncs  uint64        // (re)subscriptions, including the first
	ReadTime time.Duration // total time spent in full reads and Build
	// Subscribed is false while the subscriptions are broken and the
	// monitor only polls (health gauge).
	Subscribed bool
}

// Stats returns the monitor's counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Reads: m.reads, Resyncs: m.resyncs, ReadTime: m.readTime, Subscribed: m.subscribed}
}

// Run watches the kernel until ctx is done, then closes Events and returns
// nil. It returns an error only when it cannot start (for example when the
// namespace cannot be entered). Run may be called once.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("monitor: run: already started")
	}
	src := m.opts.source
	if src == nil {
		s, err := newNetlinkSource(m.opts.NetNS, m.opts.Sysfs, cmp.Or(m.opts.receiveBuffer, receiveBuffer))
		if err != nil {
			close(m.events)
			return fmt.Errorf("monitor: run: %w", err)
		}
		src = s
	}
	defer src.close()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.deliver(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		close(m.events)
	}()
	m.loop(ctx, src)
	return nil
}

// loop owns the subscriptions and the reads.
func (m *Monitor) loop(ctx context.Context, src source) {
	hints := make(chan struct{}, 1)
	interrupted := make(chan struct{}, 1) // a listing was inconsistent
	fails := make(chan error, 1)          // a subscription broke (first error kept)
	hint := func() {
		select {
		case hints <- struct{}{}:
		default:
		}
	}
	fail := func(err error) {
		if errors.Is(err, errInterrupted) {
			select {
			case interrupted <- struct{}{}:
			default:
			}
			return
		}
		select {
		case fails <- err:
		default:
		}
	}

	var (
		stop        func()
		subscribed  time.Time
		needSub     = true
		resync      = false       // the next published state comes from a resync
		backoff     time.Duration // the first resubscription is immediate
		readTimer   *time.Timer
		readC       <-chan time.Time
		subTimer    *time.Timer
		subC        <-chan time.Time
		readBackoff = retryMin
		readCost    time.Duration // duration of the last successful read
	)
	defer func() {
		if stop != nil {
			stop()
		}
		if readTimer != nil {
			readTimer.Stop()
		}
		if subTimer != nil {
			subTimer.Stop()
		}
	}()
	scheduleRead := func(d time.Duration) {
		if readC == nil {
			readTimer = time.NewTimer(d)
			readC = readTimer.C
		}
	}
	scheduleSub := func(d time.Duration) {
		if subC == nil {
			subTimer = time.NewTimer(d)
			subC = subTimer.C
		}
	}
	nextBackoff := func() time.Duration {
		d := backoff
		backoff = min(max(2*backoff, retryMin), retryMax)
		return d
	}
	subscribe := func() {
		if stop != nil {
			stop()
			stop = nil
		}
		// Drop what the old subscription reported: the new one starts
		// from a full read.
		select {
		case <-fails:
		default:
		}
		select {
		case <-interrupted:
		default:
		}
		s, err := src.subscribe(hint, fail)
		if err != nil {
			d := nextBackoff()
			m.log.Warn("subscribe failed", "err", err, "retry_seconds", d.Seconds())
			scheduleSub(d)
			// Without notifications, poll: read now and at every retry.
			resync = true
			scheduleRead(0)
			return
		}
		stop, needSub, subscribed, resync = s, false, time.Now(), true
		m.mu.Lock()
		m.resyncs++
		m.subscribed = true
		m.mu.Unlock()
		scheduleRead(0)
	}

	subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hints:
			scheduleRead(max(m.debounce, min(readDuty*readCost, maxThrottle)))
		case <-interrupted:
			// The initial listing was inconsistent: a fresh read repairs
			// it; the subscription itself is fine.
			m.log.Debug("listing interrupted, resync")
			resync = true
			scheduleRead(m.debounce)
		case err := <-fails:
			if time.Since(subscribed) > stableAfter {
				backoff = 0
			}
			d := nextBackoff()
			m.log.Warn("subscription failed, resync", "err", err, "retry_seconds", d.Seconds())
			needSub = true
			m.mu.Lock()
			m.subscribed = false
			m.mu.Unlock()
			scheduleSub(d)
		case <-subC:
			subC = nil
			if needSub {
				subscribe()
			}
		case <-readC:
			readC = nil
			began := time.Now()
			raw, err := m.read(src)
			if err != nil {
				d := readBackoff
				readBackoff = min(2*readBackoff, retryMax)
				m.log.Warn("read failed", "err", err, "retry_seconds", d.Seconds())
				resync = true
				scheduleRead(d)
				continue
			}
			readBackoff = retryMin
			st := Build(raw, m.rules)
			readCost = time.Since(began)
			m.publish(st, resync, readCost)
			resync = false
		}
	}
}

// read does a full read, repeating it while the kernel says it was
// interrupted.
func (m *Monitor) read(src source) (Raw, error) {
	var err error
	for range dumpAttempts {
		var raw Raw
		raw, err = src.dump()
		if err == nil {
			return raw, nil
		}
		if !errors.Is(err, errInterrupted) {
			return Raw{}, err
		}
	}
	return Raw{}, err
}

// publish stores a new state and wakes the delivery goroutine.
func (m *Monitor) publish(st mobike.NetState, resync bool, took time.Duration) {
	m.mu.Lock()
	m.latest = st
	m.resyncPending = m.resyncPending || resync
	m.reads++
	m.readTime += took
	m.mu.Unlock()
	if m.log.Enabled(context.Background(), slog.LevelDebug) {
		m.log.Debug("state read", "links", len(st.Links), "addrs", len(st.Addrs), "gateways", len(st.Gateways), "resync", resync)
	}
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// deliver hands the newest state to the consumer. It keeps only the last
// state it delivered and recomputes the event whenever a newer state arrives
// before the consumer takes the pending one.
func (m *Monitor) deliver(ctx context.Context) {
	var sent mobike.NetState
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.notify:
		}
	again:
		m.mu.Lock()
		st, resync := m.latest, m.resyncPending
		m.resyncPending = false
		m.mu.Unlock()
		reasons := Diff(sent, st)
		if resync {
			reasons = append([]mobike.NetReason{mobike.NetResync}, reasons...)
		}
		if len(reasons) == 0 {
			continue
		}
		if m.log.Enabled(ctx, slog.LevelInfo) {
			m.log.Info("network changed", "reasons", fmt.Sprint(reasons))
		}
		select {
		case m.events <- mobike.EvNetState{State: Clone(st), Reasons: reasons}:
			sent = st
		case <-m.notify:
			if resync {
				m.mu.Lock()
				m.resyncPending = true
				m.mu.Unlock()
			}
			goto again
		case <-ctx.Done():
			return
		}
	}
}
