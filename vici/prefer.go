package vici

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// DefaultReprobe: an SA read from the fallback tries the primary source
// again after this long (its CHILD_SAs may have moved into the kernel, or
// the primary's failure was a moment: a rekey between two lookups).
const DefaultReprobe = 5 * time.Minute

// PreferOptions configure a PreferredCounters.
type PreferOptions struct {
	Reprobe time.Duration // 0 = DefaultReprobe
	// Absent reports whether the primary's error means it does not have
	// the SA (the kernel has no XFRM state for it): the SA stays on the
	// fallback until Reprobe. Other errors (charon did not list the busy
	// SA, a socket error) use the fallback for that reading only. nil:
	// every error means absent.
	Absent func(error) bool
	Logger *slog.Logger
	Now    func() time.Time // nil = time.Now
}

// PreferredCounters reads an SA's counters from a primary source (the
// kernel's XFRM states: cheaper) while it has them and from a fallback
// (charon's list-sas: kernel-libipsec keeps ESP in user space, no XFRM
// states) otherwise. The choice is made per SA and remembered: a primary
// that does not have the SA (PreferOptions.Absent) moves it to the fallback
// until Reprobe has passed. Each
// reading carries its Source, and the core never compares readings of two
// sources (mobike.CounterSource), so a switch cannot look like a silence.
type PreferredCounters struct {
	primary, fallback CounterReader
	opts              PreferOptions

	mu      sync.Mutex
	sas     map[mobike.SARef]*preferState
	sweepAt time.Time
	reads   [2]uint64 // primary, fallback
	told    [2]bool   // the first reading of each source was logged at info
}

type preferState struct {
	fallbackUntil time.Time // zero: primary
	used          time.Time
}

// NewPreferredCounters returns a reader preferring primary over fallback.
func NewPreferredCounters(primary, fallback CounterReader, o PreferOptions) *PreferredCounters {
	if o.Reprobe <= 0 {
		o.Reprobe = DefaultReprobe
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &PreferredCounters{primary: primary, fallback: fallback, opts: o, sas: map[mobike.SARef]*preferState{}}
}

// SACounters reads ref's counters from the source chosen for it.
func (p *PreferredCounters) SACounters(ctx context.Context, ref mobike.SARef) (Counters, error) {
	now := p.opts.Now()
	p.mu.Lock()
	p.sweep(now)
	st := p.sas[ref]
	if st == nil {
		st = &preferState{}
		p.sas[ref] = st
	}
	st.used = now
	tryPrimary := !now.Before(st.fallbackUntil)
	p.mu.Unlock()
	if tryPrimary {
		n, err := p.primary.SACounters(ctx, ref)
		if err == nil {
			p.mu.Lock()
			st.fallbackUntil = time.Time{}
			p.reads[0]++
			first := !p.told[0]
			p.told[0] = true
			p.mu.Unlock()
			if first {
				p.opts.Logger.Info("traffic counters from the kernel", "sa", ref.String(), "source", n.Source.String())
			}
			return n, nil
		}
		if ctx.Err() != nil {
			return Counters{}, fmt.Errorf("vici: counters of %s: %w", ref, ctx.Err())
		}
		if p.opts.Absent != nil && !p.opts.Absent(err) {
			p.opts.Logger.Debug("traffic counters from charon this once", "sa", ref.String(), "err", err)
		} else {
			p.mu.Lock()
			st.fallbackUntil = now.Add(p.opts.Reprobe)
			first := !p.told[1]
			p.told[1] = true
			p.mu.Unlock()
			lvl := slog.LevelDebug
			if first { // once: kernel-libipsec makes every SA fall back
				lvl = slog.LevelInfo
			}
			p.opts.Logger.Log(ctx, lvl, "traffic counters from charon", "sa", ref.String(), "until", now.Add(p.opts.Reprobe), "err", err)
		}
	}
	n, err := p.fallback.SACounters(ctx, ref)
	if err != nil {
		return Counters{}, err
	}
	p.mu.Lock()
	p.reads[1]++
	p.mu.Unlock()
	return n, nil
}

// Reads returns the readings served by the primary and by the fallback.
func (p *PreferredCounters) Reads() (primary, fallback uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads[0], p.reads[1]
}

// sweep forgets, once per Reprobe, the SAs not read for two Reprobes (gone,
// or no longer watched); p.mu is held.
func (p *PreferredCounters) sweep(now time.Time) {
	if now.Before(p.sweepAt) {
		return
	}
	p.sweepAt = now.Add(p.opts.Reprobe)
	for ref, st := range p.sas {
		if now.Sub(st.used) > 2*p.opts.Reprobe {
			delete(p.sas, ref)
		}
	}
}
