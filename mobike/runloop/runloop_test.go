package runloop

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// fakeCore asks for a deadline 1 s after each event and records what it saw.
type fakeCore struct {
	seen     []string
	deadline time.Time
}

func (c *fakeCore) Step(now time.Time, ev mobike.Event) []mobike.Action {
	switch e := ev.(type) {
	case mobike.EvTimer:
		c.seen = append(c.seen, "timer@"+now.Format("05.000"))
		c.deadline = time.Time{}
		return nil
	case mobike.EvCharon:
		c.seen = append(c.seen, "charon")
		c.deadline = now.Add(time.Second)
		return []mobike.Action{mobike.ActProbeStop{Pair: mobike.Pair{Local: netip.MustParseAddr("10.0.0.1")}}}
	case mobike.EvRoutingApplied:
		c.seen = append(c.seen, "applied:"+e.Failed[0])
	}
	return nil
}

func (c *fakeCore) NextDeadline() time.Time { return c.deadline }

type fakeExec struct{ got []mobike.Action }

func (e *fakeExec) Execute(ctx context.Context, now time.Time, a mobike.Action) []mobike.Event {
	e.got = append(e.got, a)
	return []mobike.Event{mobike.EvRoutingApplied{Failed: []string{"fed-back"}}}
}

func TestLoopEventsTimerAndFeedback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core := &fakeCore{}
		ex := &fakeExec{}
		var observed int
		l := New(core, ex, nil, func(time.Time, mobike.Event, []mobike.Action) { observed++ })
		ctx, cancel := context.WithCancel(context.Background())
		src := make(chan mobike.Event, 1)
		go l.Source(ctx, src)
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		start := time.Now()
		seen := func() []string {
			var s []string
			if err := l.Do(ctx, func() { s = append(s, core.seen...) }); err != nil {
				t.Fatal(err)
			}
			return s
		}
		src <- mobike.EvCharon{Up: true}
		synctest.Wait()
		// The executor's result was fed back in the same turn.
		if s := seen(); len(s) != 2 || s[1] != "applied:fed-back" {
			t.Fatalf("seen %v", s)
		}
		time.Sleep(1500 * time.Millisecond) // virtual time: the 1 s deadline fires
		synctest.Wait()
		if s := seen(); len(s) != 3 || s[2] != "timer@"+start.Add(time.Second).Format("05.000") {
			t.Fatalf("seen %v", s)
		}
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Run returned %v", err)
		}
		if observed != 3 || len(ex.got) != 1 {
			t.Fatalf("observed %d, executed %d", observed, len(ex.got))
		}
	})
}

// A core that never advances a past deadline must not make the loop spin.
type stuckCore struct{ steps int }

func (c *stuckCore) Step(time.Time, mobike.Event) []mobike.Action { c.steps++; return nil }
func (c *stuckCore) NextDeadline() time.Time                      { return time.Unix(1, 0) }

func TestLoopNoSpinOnStuckDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core := &stuckCore{}
		l := New(core, &fakeExec{}, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		var steps int
		_ = l.Do(ctx, func() { steps = core.steps })
		cancel()
		<-done
		if steps != 1 {
			t.Fatalf("stuck deadline stepped %d times, want 1", steps)
		}
	})
}

func TestLoopNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		l := New(&fakeCore{}, &fakeExec{}, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		src := make(chan mobike.Event)
		done := make(chan struct{})
		go func() { l.Source(ctx, src); close(done) }()
		go func() { _ = l.Run(ctx) }()
		cancel()
		<-done
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("goroutines: before %d, after %d", before, n)
	}
}
