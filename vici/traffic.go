package vici

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/mobiked/mobiked/mobike"
)

// Counters are the traffic counters of an IKE_SA's CHILD_SAs, summed, where
// they come from and which CHILD_SAs they count (mobike.EvTraffic).
type Counters struct {
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
	Source                                   mobike.CounterSource
	Set                                      uint64
}

// ErrSANotFound: charon does not list the IKE_SA (it went away).
var ErrSANotFound = errors.New("vici: IKE_SA not found")

// SACounters reads the counters of one IKE_SA from charon's list-sas.
func (c *Client) SACounters(ctx context.Context, ref mobike.SARef) (Counters, error) {
	s, err := c.listSA(ctx, ref)
	if err != nil {
		return Counters{}, fmt.Errorf("vici: counters of %s: %w", ref, err)
	}
	n := Counters{Source: mobike.CounterSourceVICI}
	ids := make([]uint64, 0, len(s.Children))
	for _, ch := range s.Children {
		ids = append(ids, uint64(ch.UniqueID))
		n.BytesIn += ch.BytesIn
		n.BytesOut += ch.BytesOut
		n.PacketsIn += ch.PacketsIn
		n.PacketsOut += ch.PacketsOut
	}
	n.Set = mobike.ChildSet(ids)
	return n, nil
}

// SAKeys are what finds an IKE_SA's CHILD_SAs in the kernel's XFRM state
// table: the IKE_SA's hosts (the outer addresses of its ESP packets, UDP
// encapsulated or not) and each installed CHILD_SA's protocol, SPIs and
// marks.
type SAKeys struct {
	Local, Remote netip.Addr
	Children      []ChildKeys
}

// ChildKeys are one installed CHILD_SA's keys: the inbound state is (Local,
// SPIIn), the outbound one (Remote, SPIOut).
type ChildKeys struct {
	Protocol        string // "ESP" or "AH", as charon lists it
	SPIIn, SPIOut   uint32
	MarkIn, MarkOut uint32 // 0: none
}

// SAKeys reads the keys of one IKE_SA's installed CHILD_SAs from charon's
// list-sas (CHILD_SAs being set up, without SPIs, are left out).
func (c *Client) SAKeys(ctx context.Context, ref mobike.SARef) (SAKeys, error) {
	s, err := c.listSA(ctx, ref)
	if err != nil {
		return SAKeys{}, fmt.Errorf("vici: keys of %s: %w", ref, err)
	}
	k, err := keysOf(s)
	if err != nil {
		return SAKeys{}, fmt.Errorf("vici: keys of %s: %w", ref, err)
	}
	return k, nil
}

func keysOf(s IKESA) (SAKeys, error) {
	k := SAKeys{Local: s.LocalHost, Remote: s.RemoteHost}
	hex32 := func(v, what string) (uint32, error) {
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 16, 32)
		if err != nil {
			return 0, decodeErr("child %s %q", what, v)
		}
		return uint32(n), nil
	}
	for _, ch := range s.Children {
		if ch.SPIIn == "" || ch.SPIOut == "" {
			continue
		}
		ck := ChildKeys{Protocol: ch.Protocol}
		var err error
		for _, f := range []struct {
			dst  *uint32
			v, n string
		}{{&ck.SPIIn, ch.SPIIn, "spi-in"}, {&ck.SPIOut, ch.SPIOut, "spi-out"}, {&ck.MarkIn, ch.MarkIn, "mark-in"}, {&ck.MarkOut, ch.MarkOut, "mark-out"}} {
			if *f.dst, err = hex32(f.v, f.n); err != nil {
				return SAKeys{}, err
			}
		}
		k.Children = append(k.Children, ck)
	}
	return k, nil
}

// listSA lists one IKE_SA: list-sas filtered by the connection name and the
// unique ID, noblock (charon does not wait for the SA's lock: a busy SA is
// skipped rather than holding the session).
func (c *Client) listSA(ctx context.Context, ref mobike.SARef) (IKESA, error) {
	m := govici.NewMessage()
	for _, kv := range [][2]string{{"ike", ref.Conn}, {"ike-id", strconv.FormatUint(uint64(ref.UniqueID), 10)}, {"noblock", "yes"}} {
		if err := m.Set(kv[0], kv[1]); err != nil {
			return IKESA{}, err
		}
	}
	msgs, err := c.listCallMsg(ctx, "list-sas", "list-sa", m)
	if err != nil {
		return IKESA{}, err
	}
	for _, msg := range msgs {
		sas, err := decodeListSA(msg)
		if err != nil {
			return IKESA{}, err
		}
		for _, s := range sas {
			if s.Conn == ref.Conn && s.UniqueID == ref.UniqueID {
				return s, nil
			}
		}
	}
	return IKESA{}, ErrSANotFound
}

// CounterReader reads an IKE_SA's counters (Client.SACounters).
type CounterReader interface {
	SACounters(ctx context.Context, ref mobike.SARef) (Counters, error)
}

const (
	// DefaultTrafficInterval: a watched SA is read at most this often.
	// The core needs two readings to see a silence (the first after a
	// failure still shows the replies from before it), so a hint comes
	// 1–2 intervals after the failure, plus its 100 ms minimum silence.
	DefaultTrafficInterval = 100 * time.Millisecond
	// DefaultTrafficBudget: at most this many reads per second in all
	// (one list-sas call each), whatever the number of watched SAs: with
	// 1 000 steering groups each is read every 50 s, with 2 every 100 ms.
	// Measured in the lab: one SA read 10 times a second costs mobiked
	// ~0.9 % of a core (1.6 % vs 0.7 % idle), so the budget bounds the
	// readings to ~2 %.
	DefaultTrafficBudget = 20
)

// TrafficOptions configure a TrafficPoller.
type TrafficOptions struct {
	Interval time.Duration // 0 = DefaultTrafficInterval
	Budget   int           // reads per second; 0 = DefaultTrafficBudget
	Logger   *slog.Logger
	Now      func() time.Time // the readings' time; nil = time.Now
}

// TrafficPoller reads the counters of the IKE_SAs the core watches
// (ActTrafficWatch) round-robin within a cost budget and reports them as
// EvTraffic. Run drives it; Watch may be called from any goroutine.
type TrafficPoller struct {
	src  CounterReader
	opts TrafficOptions
	out  chan mobike.Event
	wake chan struct{}

	mu    sync.Mutex
	watch []mobike.SARef
	next  int
	reads uint64
	errs  uint64
}

// NewTrafficPoller returns a poller reading through src.
func NewTrafficPoller(src CounterReader, o TrafficOptions) *TrafficPoller {
	if o.Interval <= 0 {
		o.Interval = DefaultTrafficInterval
	}
	if o.Budget <= 0 {
		o.Budget = DefaultTrafficBudget
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "traffic")
	if o.Now == nil {
		o.Now = time.Now
	}
	return &TrafficPoller{src: src, opts: o, out: make(chan mobike.Event, 64), wake: make(chan struct{}, 1)}
}

// Events delivers the readings.
func (p *TrafficPoller) Events() <-chan mobike.Event { return p.out }

// Watch replaces the watched SAs.
func (p *TrafficPoller) Watch(a mobike.ActTrafficWatch) {
	p.mu.Lock()
	p.watch = slices.Clone(a.SAs)
	p.next = 0
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stats returns the reads done and failed.
func (p *TrafficPoller) Stats() (reads, errs uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads, p.errs
}

// Gap is the pause between two reads with n SAs watched: a round over all
// takes Interval, or n/Budget seconds when that is longer.
func (p *TrafficPoller) Gap(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return max(p.opts.Interval/time.Duration(n), time.Second/time.Duration(p.opts.Budget))
}

// PollOnce reads the next watched SA and emits its reading; it reports
// whether an SA was watched.
func (p *TrafficPoller) PollOnce(ctx context.Context) bool {
	p.mu.Lock()
	if len(p.watch) == 0 {
		p.mu.Unlock()
		return false
	}
	ref := p.watch[p.next%len(p.watch)]
	p.next = (p.next + 1) % len(p.watch)
	p.mu.Unlock()
	n, err := p.src.SACounters(ctx, ref)
	at := p.opts.Now()
	p.mu.Lock()
	p.reads++
	if err != nil {
		p.errs++
	}
	p.mu.Unlock()
	if err != nil {
		p.opts.Logger.Debug("traffic counters", "sa", ref.String(), "err", err)
		return true
	}
	ev := mobike.EvTraffic{SA: ref, At: at, Source: n.Source, Set: n.Set, BytesIn: n.BytesIn, BytesOut: n.BytesOut, PacketsIn: n.PacketsIn, PacketsOut: n.PacketsOut}
	select {
	case p.out <- ev:
	case <-ctx.Done():
	}
	return true
}

// Run reads until ctx ends.
func (p *TrafficPoller) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := time.Duration(0)
		if p.PollOnce(ctx) {
			p.mu.Lock()
			wait = p.Gap(len(p.watch))
			p.mu.Unlock()
		}
		if wait == 0 {
			select { // nothing watched: wait for a watch
			case <-ctx.Done():
				return ctx.Err()
			case <-p.wake:
				continue
			}
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
