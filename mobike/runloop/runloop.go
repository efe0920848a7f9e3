// Package runloop is the single goroutine that owns mobiked's core: it selects
// over the adapters' event channels, one timer armed from the core's
// NextDeadline, and requests from outside (control API, reload), calls Step
// with the current time, and hands the resulting actions to an executor whose
// results come back as events. Nothing else touches the core.
package runloop

import (
	"context"
	"errors"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Core is what the loop drives (mobike.Controller).
type Core interface {
	Step(now time.Time, ev mobike.Event) []mobike.Action
	NextDeadline() time.Time
}

// Executor carries out actions. Execute must not block for long (it runs on
// the loop goroutine); events it returns are fed back into the core at once,
// in order.
type Executor interface {
	Execute(ctx context.Context, now time.Time, a mobike.Action) []mobike.Event
}

// Clock is the loop's time source.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that fires once after d, and a stop function.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Observer is called after each Step with the event and the actions (for
// traces, metrics and logs). It runs on the loop goroutine.
type Observer func(now time.Time, ev mobike.Event, acts []mobike.Action)

// Loop owns a Core.
type Loop struct {
	core    Core
	exec    Executor
	clock   Clock
	observe Observer
	in      chan mobike.Event
	ops     chan func()
}

// New returns a loop. events is the fan-in channel adapters send on (see
// Source); a nil observer is allowed.
func New(core Core, exec Executor, clock Clock, observe Observer) *Loop {
	if clock == nil {
		clock = RealClock
	}
	return &Loop{core: core, exec: exec, clock: clock, observe: observe,
		in: make(chan mobike.Event, 4096), ops: make(chan func())}
}

// Source forwards an adapter's event channel into the loop until ch closes or
// ctx ends. Run it in its own goroutine.
func (l *Loop) Source(ctx context.Context, ch <-chan mobike.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			select {
			case l.in <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Inject queues one event (from any goroutine).
func (l *Loop) Inject(ctx context.Context, ev mobike.Event) error {
	select {
	case l.in <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrStopped is returned by Do when the loop is not running.
var ErrStopped = errors.New("runloop: stopped")

// Do runs fn on the loop goroutine (so it may read or step the core) and
// waits for it.
func (l *Loop) Do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case l.ops <- func() { fn(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Step feeds ev to the core now and executes the actions; only call it from
// the loop goroutine (inside Do).
func (l *Loop) Step(ctx context.Context, ev mobike.Event) {
	queue := []mobike.Event{ev}
	for len(queue) > 0 {
		ev := queue[0]
		queue = queue[1:]
		now := l.clock.Now()
		acts := l.core.Step(now, ev)
		if l.observe != nil {
			l.observe(now, ev, acts)
		}
		for _, a := range acts {
			queue = append(queue, l.exec.Execute(ctx, now, a)...)
		}
	}
}

// Run is the loop. It returns when ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	var timerC <-chan time.Time
	stop := func() bool { return false }
	var armed, fired time.Time
	for {
		// A deadline that already fired is not re-armed: a core that does not
		// advance it must not make the loop spin.
		if dl := l.core.NextDeadline(); !dl.Equal(armed) && !dl.Equal(fired) {
			stop()
			armed = dl
			timerC = nil
			if !dl.IsZero() {
				d := dl.Sub(l.clock.Now())
				if d < 0 {
					d = 0
				}
				timerC, stop = l.clock.NewTimer(d)
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case ev := <-l.in:
			l.Step(ctx, ev)
		case fn := <-l.ops:
			fn()
		case <-timerC:
			fired = armed
			armed = time.Time{}
			timerC = nil
			l.Step(ctx, mobike.EvTimer{})
		}
	}
}
