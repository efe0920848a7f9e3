package probe

import (
	"slices"
	"sync"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// fakeClock is a virtual clock: time moves only in Advance, which runs due
// callbacks synchronously in time order.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	nextID int
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	id   int
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	t := &fakeTimer{c: c, at: c.now.Add(max(d, 0)), id: c.nextID, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves time forward by d, firing every timer due on the way.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	for {
		c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.done })
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.at.After(target) && (next == nil || t.at.Before(next.at) || t.at.Equal(next.at) && t.id < next.id) {
				next = t
			}
		}
		if next == nil {
			break
		}
		next.done = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = target
	c.mu.Unlock()
}

// fakeNet is an in-memory Transport: every probe is answered after rtt
// unless drop says otherwise.
type fakeNet struct {
	clock *fakeClock

	mu        sync.Mutex
	rtt       time.Duration
	rttFn     func() time.Duration // when set, each probe's RTT (overrides rtt)
	polled    bool                 // replies wait for Poll (like real sockets)
	queued    []func()             // replies that arrived, waiting for Poll
	polls     int                  // Poll calls
	flushes   int                  // Flush calls
	unflushed int                  // sends since the last Flush
	batches   []int                // sends per Flush
	drop      func(p mobike.Pair, seq uint32) bool
	badNonce  bool
	nat       mobike.NATVerdict
	sends     map[mobike.Pair][]time.Time
	bytesEach int
	opens     int
}

func newFakeNet(c *fakeClock) *fakeNet {
	return &fakeNet{clock: c, rtt: 10 * time.Millisecond, sends: map[mobike.Pair][]time.Time{}, bytesEach: 72}
}

func (n *fakeNet) Open(p Path, deliver func(Reply)) (Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opens++
	return &fakeEP{n: n, pair: p.Pair, deliver: deliver}, nil
}

func (n *fakeNet) sendTimes(p mobike.Pair) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sends[p])
}

func (n *fakeNet) set(f func(n *fakeNet)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n)
}

type fakeEP struct {
	n       *fakeNet
	pair    mobike.Pair
	deliver func(Reply)
}

func (e *fakeEP) NonceLen() int { return 8 }
func (e *fakeEP) Close() error  { return nil }

func (e *fakeEP) Send(seq uint32, nonce []byte) (int, error) {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sends[e.pair] = append(n.sends[e.pair], n.clock.Now())
	if n.drop != nil && n.drop(e.pair, seq) {
		return n.bytesEach, nil
	}
	n.unflushed++
	r := Reply{Seq: seq, Nonce: slices.Clone(nonce), NAT: n.nat}
	if n.badNonce {
		r.Nonce[0] ^= 1
	}
	rtt := n.rtt
	if n.rttFn != nil {
		rtt = n.rttFn()
	}
	n.clock.AfterFunc(rtt, func() {
		r.At = n.clock.Now() // the "kernel timestamp"
		if !n.polled {
			e.deliver(r)
			return
		}
		n.mu.Lock()
		n.queued = append(n.queued, func() { e.deliver(r) })
		n.mu.Unlock()
	})
	return n.bytesEach, nil
}

// Flush records the batch (the fake sends at once; this only counts).
func (n *fakeNet) Flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flushes++
	n.batches = append(n.batches, n.unflushed)
	n.unflushed = 0
}

// pollNet is a fakeNet whose replies wait in the "socket" until Poll.
type pollNet struct{ *fakeNet }

func newPollNet(c *fakeClock) pollNet {
	n := newFakeNet(c)
	n.polled = true
	return pollNet{n}
}

// Poll delivers every reply that arrived.
func (n pollNet) Poll() {
	n.mu.Lock()
	q := n.queued
	n.queued = nil
	n.polls++
	n.mu.Unlock()
	for _, f := range q {
		f()
	}
}
