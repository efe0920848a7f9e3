package monitor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// fakeSource is a scripted kernel: tests change raw and call hint or fail
// as the netlink subscriptions would.
type fakeSource struct {
	mu       sync.Mutex
	raw      Raw
	dumpErrs []error // returned by the next dumps, in order
	subErrs  []error // returned by the next subscribes, in order
	dumps    int
	subs     int
	stops    int
	hint     func()
	fail     func(error)
	closed   bool
}

func (f *fakeSource) subscribe(hint func(), fail func(error)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs++
	if len(f.subErrs) > 0 {
		err := f.subErrs[0]
		f.subErrs = f.subErrs[1:]
		return nil, err
	}
	f.hint, f.fail = hint, fail
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.stops++
		f.hint, f.fail = nil, nil
	}, nil
}

func (f *fakeSource) dump() (Raw, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	if len(f.dumpErrs) > 0 {
		err := f.dumpErrs[0]
		f.dumpErrs = f.dumpErrs[1:]
		if err != nil {
			return Raw{}, err
		}
	}
	return cloneRaw(f.raw), nil
}

func (f *fakeSource) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

// change modifies the kernel state and sends n notifications.
func (f *fakeSource) change(n int, fn func(*Raw)) {
	f.mu.Lock()
	fn(&f.raw)
	hint := f.hint
	f.mu.Unlock()
	for range n {
		hint()
	}
}

func (f *fakeSource) counts() (dumps, subs, stops int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dumps, f.subs, f.stops
}

// start runs a monitor on src inside the current synctest bubble and
// returns it with a function that stops it and checks the shutdown.
func start(t *testing.T, src *fakeSource) (*Monitor, func()) {
	t.Helper()
	m, err := New(Options{source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	return m, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if _, ok := <-m.Events(); ok {
			t.Errorf("Events not closed after Run returned")
		}
		if !src.closed {
			t.Errorf("source not closed")
		}
	}
}

// next returns the pending event, failing if there is none.
func next(t *testing.T, m *Monitor) mobike.EvNetState {
	t.Helper()
	synctest.Wait()
	select {
	case ev := <-m.Events():
		return ev.(mobike.EvNetState)
	default:
		t.Fatalf("no event pending")
		return mobike.EvNetState{}
	}
}

func noEvent(t *testing.T, m *Monitor) {
	t.Helper()
	synctest.Wait()
	select {
	case ev := <-m.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func reasons(rs ...mobike.NetReason) []mobike.NetReason { return rs }

func TestRunFirstEventIsResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, stop := start(t, src)
		defer stop()
		ev := next(t, m)
		want := reasons(mobike.NetResync, mobike.NetLinkAdded, mobike.NetAddrAdded, mobike.NetGatewayChanged)
		if !slices.Equal(ev.Reasons, want) {
			t.Errorf("reasons = %v, want %v", ev.Reasons, want)
		}
		if !Equal(ev.State, labState()) {
			t.Errorf("state:%s", render(ev.State))
		}
		if !Equal(m.Snapshot(), labState()) {
			t.Errorf("snapshot:%s", render(m.Snapshot()))
		}
		noEvent(t, m)
	})
}

func TestRunDebouncesBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, stop := start(t, src)
		defer stop()
		next(t, m)
		d0, _, _ := src.counts()

		src.change(500, func(r *Raw) { r.Links[0].RawFlags &^= iffRunning }) // eth1 loses carrier
		time.Sleep(DefaultDebounce / 2)
		src.change(500, func(r *Raw) { r.Addrs = append(r.Addrs, RawAddr{Prefix: mustPrefix("10.1.0.3/24"), LinkIdx: 2}) })
		noEvent(t, m) // still collecting
		time.Sleep(DefaultDebounce / 2)
		ev := next(t, m)
		if d, _, _ := src.counts(); d != d0+1 {
			t.Errorf("1000 notifications cost %d reads, want 1", d-d0)
		}
		if want := reasons(mobike.NetLinkDown, mobike.NetAddrAdded); !slices.Equal(ev.Reasons, want) {
			t.Errorf("reasons = %v, want %v", ev.Reasons, want)
		}
		noEvent(t, m)

		// A notification that changes nothing produces no event.
		src.change(3, func(*Raw) {})
		time.Sleep(DefaultDebounce)
		noEvent(t, m)
		if d, _, _ := src.counts(); d != d0+2 {
			t.Errorf("reads = %d, want %d", d, d0+2)
		}
	})
}

func TestRunRetriesInterruptedDumps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab(), dumpErrs: []error{errInterrupted, fmt.Errorf("dump links: %w", errInterrupted)}}
		m, stop := start(t, src)
		defer stop()
		ev := next(t, m)
		if d, _, _ := src.counts(); d != 3 {
			t.Errorf("dumps = %d, want 3", d)
		}
		if ev.Reasons[0] != mobike.NetResync || !Equal(ev.State, labState()) {
			t.Errorf("event %v:%s", ev.Reasons, render(ev.State))
		}

		// An interrupted initial listing of a subscription forces a read
		// that is reported as a resync, even without a change.
		src.fail(errInterrupted)
		time.Sleep(DefaultDebounce)
		ev = next(t, m)
		if !slices.Equal(ev.Reasons, reasons(mobike.NetResync)) {
			t.Errorf("reasons = %v, want [resync]", ev.Reasons)
		}
		if _, subs, _ := src.counts(); subs != 1 {
			t.Errorf("subscriptions = %d, want 1 (an interrupted listing needs no new subscription)", subs)
		}

		// Reads that keep failing are retried with back-off, and the
		// state that finally comes is a resync.
		src.mu.Lock()
		src.dumpErrs = []error{errors.New("dump links: boom"), errors.New("dump links: boom")}
		src.mu.Unlock()
		src.change(1, func(r *Raw) { r.Addrs = r.Addrs[:len(r.Addrs)-1] })
		time.Sleep(DefaultDebounce)
		noEvent(t, m)
		time.Sleep(retryMin)
		noEvent(t, m)
		time.Sleep(2 * retryMin)
		ev = next(t, m)
		if !slices.Equal(ev.Reasons, reasons(mobike.NetResync)) { // the removed address was on ipsec0
			t.Errorf("reasons = %v, want [resync]", ev.Reasons)
		}
	})
}

func TestRunResubscribesOnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, stop := start(t, src)
		defer stop()
		next(t, m)

		// An overflow: the kernel dropped notifications (the change is
		// not hinted), the socket reports ENOBUFS.
		src.change(0, func(r *Raw) { r.Links[2].RawFlags &^= iffUp })
		src.fail(errors.New("receive failed: no buffer space available"))
		ev := next(t, m) // the first resubscription is immediate
		if _, subs, stops := src.counts(); subs != 2 || stops != 1 {
			t.Errorf("subs %d stops %d, want 2 and 1", subs, stops)
		}
		if want := reasons(mobike.NetResync, mobike.NetLinkDown); !slices.Equal(ev.Reasons, want) {
			t.Errorf("reasons = %v, want %v", ev.Reasons, want)
		}

		// Repeated failures back off exponentially.
		src.fail(errors.New("receive failed: no buffer space available"))
		synctest.Wait()
		if _, subs, _ := src.counts(); subs != 2 {
			t.Fatalf("resubscribed before the back-off: subs %d", subs)
		}
		time.Sleep(retryMin)
		ev = next(t, m)
		if _, subs, _ := src.counts(); subs != 3 {
			t.Fatalf("subs = %d after 100 ms, want 3", subs)
		}
		src.mu.Lock()
		src.subErrs = []error{errors.New("subscribe links: EMFILE")}
		src.mu.Unlock()
		src.fail(errors.New("receive failed: EBADF"))
		synctest.Wait()
		if m.Stats().Subscribed {
			t.Errorf("stats say subscribed after a failure")
		}
		dumps, _, _ := src.counts()
		src.change(0, func(r *Raw) { r.Links[2].RawFlags |= iffUp })
		time.Sleep(2 * retryMin) // third failure in a row: 200 ms
		ev = next(t, m)
		if _, subs, _ := src.counts(); subs != 4 {
			t.Fatalf("subs = %d, want 4", subs)
		}
		// Without a subscription the monitor polls.
		if d, _, _ := src.counts(); d != dumps+1 {
			t.Errorf("%d reads after the failed subscription, want 1", d-dumps)
		}
		if want := reasons(mobike.NetResync, mobike.NetLinkUp); !slices.Equal(ev.Reasons, want) {
			t.Errorf("reasons = %v, want %v", ev.Reasons, want)
		}
		time.Sleep(4*retryMin - time.Millisecond)
		synctest.Wait()
		if _, subs, _ := src.counts(); subs != 4 {
			t.Fatalf("subs = %d before the 400 ms back-off ended, want 4", subs)
		}
		time.Sleep(time.Millisecond)
		ev = next(t, m)
		if _, subs, _ := src.counts(); subs != 5 {
			t.Fatalf("subs = %d, want 5", subs)
		}
		if !slices.Equal(ev.Reasons, reasons(mobike.NetResync)) {
			t.Errorf("reasons = %v, want [resync]", ev.Reasons)
		}
		if !m.Stats().Subscribed {
			t.Errorf("stats say not subscribed")
		}

		// After a stable period the back-off starts from zero again.
		time.Sleep(stableAfter + time.Second)
		src.fail(errors.New("receive failed: no buffer space available"))
		next(t, m)
		if _, subs, _ := src.counts(); subs != 6 {
			t.Fatalf("subs = %d, want 6 (immediate resubscription)", subs)
		}
	})
}

func TestRunCoalescesForSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, stop := start(t, src)
		defer stop()
		first := next(t, m)

		for i := range 200 {
			src.change(1, func(r *Raw) {
				r.Addrs = append(r.Addrs, RawAddr{Prefix: netipPrefix4(10, 1, 1, byte(1+i), 24), LinkIdx: 2})
			})
			time.Sleep(DefaultDebounce)
		}
		// The last state changes the gateway too.
		src.change(1, func(r *Raw) { r.Routes[1].Priority = 50 })
		time.Sleep(DefaultDebounce)
		ev := next(t, m)
		if d, _, _ := src.counts(); d < 200 {
			t.Errorf("only %d reads", d)
		}
		if want := reasons(mobike.NetAddrAdded, mobike.NetGatewayChanged); !slices.Equal(ev.Reasons, want) {
			t.Errorf("reasons = %v, want %v (diff against the last delivered state)", ev.Reasons, want)
		}
		if got, want := len(ev.State.Addrs), len(first.State.Addrs)+200; got != want {
			t.Errorf("%d addresses, want %d", got, want)
		}
		if !Equal(ev.State, m.Snapshot()) {
			t.Errorf("event is not the newest state")
		}
		noEvent(t, m)
	})
}

func TestRunStopsWhileConsumerIsAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		_, stop := start(t, src)
		synctest.Wait() // the first event waits for a receiver
		stop()
		if _, _, stops := src.counts(); stops != 1 {
			t.Errorf("subscription stopped %d times, want 1", stops)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := start(t, &fakeSource{raw: lab()})
		synctest.Wait()
		if err := m.Run(t.Context()); err == nil {
			t.Errorf("second Run succeeded")
		}
		stop()
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{Debounce: -time.Second}, {IgnoreTables: []int{-1}}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// slowSource makes every dump take cost (of virtual time).
type slowSource struct {
	*fakeSource
	cost time.Duration
}

func (s slowSource) dump() (Raw, error) {
	time.Sleep(s.cost)
	return s.fakeSource.dump()
}

func TestRunThrottlesSlowReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, err := New(Options{source: slowSource{src, 100 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		time.Sleep(100 * time.Millisecond) // the first read
		next(t, m)
		start := time.Now()
		src.change(1, func(r *Raw) { r.Links[0].RawFlags &^= iffUp })
		next := func() {
			synctest.Wait()
			<-m.Events()
		}
		next()
		// readDuty × 100 ms before the read starts, 100 ms for the read.
		if got, want := time.Since(start), readDuty*100*time.Millisecond+100*time.Millisecond; got != want {
			t.Errorf("event after %v, want %v", got, want)
		}
	})
}

func TestRunThrottleIsCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{raw: lab()}
		m, err := New(Options{source: slowSource{src, time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		time.Sleep(time.Second)
		next(t, m)
		start := time.Now()
		src.change(1, func(r *Raw) { r.Links[0].RawFlags &^= iffUp })
		synctest.Wait()
		<-m.Events()
		if got, want := time.Since(start), maxThrottle+time.Second; got != want {
			t.Errorf("event after %v, want %v", got, want)
		}
	})
}

func BenchmarkBuild10000(b *testing.B) {
	raw := lab()
	for i := range 10000 {
		raw.Addrs = append(raw.Addrs, RawAddr{Prefix: netipPrefix4(10, byte(100+i/65536), byte(i/256), byte(i), 32), LinkIdx: 2})
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(raw, Rules{})
	}
}

func BenchmarkDiff10000(b *testing.B) {
	raw := lab()
	for i := range 10000 {
		raw.Addrs = append(raw.Addrs, RawAddr{Prefix: netipPrefix4(10, byte(100+i/65536), byte(i/256), byte(i), 32), LinkIdx: 2})
	}
	old := Build(raw, Rules{})
	raw.Addrs = raw.Addrs[:len(raw.Addrs)-1]
	nw := Build(raw, Rules{})
	b.ReportAllocs()
	for b.Loop() {
		Diff(old, nw)
	}
}
