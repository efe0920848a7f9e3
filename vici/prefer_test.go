package vici

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/vici/vicitest"
)

// sourceFake is one counter source: it has some SAs, fails for the others.
type sourceFake struct {
	src   mobike.CounterSource
	has   map[mobike.SARef]bool
	calls int
	n     uint64
}

var errNoState = errors.New("no XFRM state")

func (f *sourceFake) SACounters(_ context.Context, ref mobike.SARef) (Counters, error) {
	f.calls++
	if !f.has[ref] {
		return Counters{}, fmt.Errorf("counters of %s: %w", ref, errNoState)
	}
	f.n += 10
	return Counters{PacketsIn: f.n, PacketsOut: f.n, Source: f.src}, nil
}

func TestPreferredCounters(t *testing.T) {
	a, b := mobike.SARef{Conn: "a", UniqueID: 1}, mobike.SARef{Conn: "b", UniqueID: 2}
	kernel := &sourceFake{src: mobike.CounterSourceXFRM, has: map[mobike.SARef]bool{a: true}}
	charon := &sourceFake{src: mobike.CounterSourceVICI, has: map[mobike.SARef]bool{a: true, b: true}}
	now := time.Unix(100, 0)
	p := NewPreferredCounters(kernel, charon, PreferOptions{Reprobe: time.Minute, Now: func() time.Time { return now }})
	ctx := context.Background()
	read := func(ref mobike.SARef, want mobike.CounterSource) {
		t.Helper()
		n, err := p.SACounters(ctx, ref)
		if err != nil || n.Source != want {
			t.Fatalf("%s at %v: %+v %v, want from %s", ref, now.Unix(), n, err, want)
		}
	}
	// a has kernel states: netlink, always. b has none: charon, and the
	// kernel is not asked again until the re-probe.
	for i := 0; i < 3; i++ {
		read(a, mobike.CounterSourceXFRM)
		read(b, mobike.CounterSourceVICI)
		now = now.Add(10 * time.Second)
	}
	if kernel.calls != 4 || charon.calls != 3 {
		t.Errorf("kernel asked %d times (want 3 for a + 1 for b), charon %d (want 3 for b)", kernel.calls, charon.calls)
	}
	if pr, fb := p.Reads(); pr != 3 || fb != 3 {
		t.Errorf("reads %d/%d, want 3/3", pr, fb)
	}
	// b's CHILD_SAs appear in the kernel: after the re-probe time, b moves
	// to netlink. a's states go (a transient miss): a moves to charon.
	kernel.has = map[mobike.SARef]bool{b: true}
	read(a, mobike.CounterSourceVICI)
	read(b, mobike.CounterSourceVICI) // not re-probed yet
	now = now.Add(time.Minute)
	read(b, mobike.CounterSourceXFRM)
	kernel.has[a] = true
	read(a, mobike.CounterSourceXFRM)
}

func TestPreferredCountersErrors(t *testing.T) {
	a := mobike.SARef{Conn: "a", UniqueID: 1}
	kernel := &sourceFake{src: mobike.CounterSourceXFRM}
	charon := &sourceFake{src: mobike.CounterSourceVICI}
	p := NewPreferredCounters(kernel, charon, PreferOptions{})
	// Both fail: the fallback's error.
	if _, err := p.SACounters(context.Background(), a); !errors.Is(err, errNoState) || charon.calls != 1 {
		t.Errorf("both failing: %v (charon asked %d times)", err, charon.calls)
	}
	// Cancelled: no fallback read, no switch remembered.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p2 := NewPreferredCounters(kernel, charon, PreferOptions{})
	if _, err := p2.SACounters(ctx, a); !errors.Is(err, context.Canceled) || charon.calls != 1 {
		t.Errorf("cancelled: %v (charon asked %d times, want still 1)", err, charon.calls)
	}
	p2.mu.Lock()
	switched := !p2.sas[a].fallbackUntil.IsZero()
	p2.mu.Unlock()
	if switched {
		t.Error("a cancelled read moved the SA to the fallback")
	}
}

// The poller hands each reading's source to the core, which compares
// readings of one source only (mobike.TestTrafficHint "source switch").
func TestTrafficPollerCarriesSource(t *testing.T) {
	a := mobike.SARef{Conn: "a", UniqueID: 1}
	kernel := &sourceFake{src: mobike.CounterSourceXFRM, has: map[mobike.SARef]bool{a: true}}
	charon := &sourceFake{src: mobike.CounterSourceVICI, has: map[mobike.SARef]bool{a: true}}
	p := NewTrafficPoller(NewPreferredCounters(kernel, charon, PreferOptions{}), TrafficOptions{})
	p.Watch(mobike.ActTrafficWatch{SAs: []mobike.SARef{a}})
	ctx := context.Background()
	var got []mobike.CounterSource
	for range 2 {
		p.PollOnce(ctx)
		got = append(got, (<-p.Events()).(mobike.EvTraffic).Source)
		kernel.has = nil
	}
	if got[0] != mobike.CounterSourceXFRM || got[1] != mobike.CounterSourceVICI {
		t.Errorf("sources %v, want xfrm then vici", got)
	}
}

func TestSAKeys(t *testing.T) {
	f := start(t, Options{Resync: -1})
	f.srv.SetSAs([]vicitest.Named{saA.Named(), saB.Named()})
	expectConnected(t, f.c.Events(), saA, saB)
	k, err := f.c.SAKeys(context.Background(), mobike.SARef{Conn: "lab", UniqueID: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := SAKeys{Local: netip.MustParseAddr("10.1.0.2"), Remote: netip.MustParseAddr("10.3.0.2"),
		Children: []ChildKeys{{Protocol: "ESP", SPIIn: 0xc1a2b3c4, SPIOut: 0xd5e6f708}}}
	if k.Local != want.Local || k.Remote != want.Remote || len(k.Children) != 1 || k.Children[0] != want.Children[0] {
		t.Errorf("keys %+v, want %+v", k, want)
	}
	if _, err := f.c.SAKeys(context.Background(), mobike.SARef{Conn: "lab", UniqueID: 9}); !errors.Is(err, ErrSANotFound) {
		t.Errorf("missing SA: %v", err)
	}
}

func TestKeysOf(t *testing.T) {
	s := IKESA{LocalHost: netip.MustParseAddr("10.1.0.2"), RemoteHost: netip.MustParseAddr("10.3.0.2"), Children: []ChildSA{
		{Protocol: "ESP", SPIIn: "c1a2b3c4", SPIOut: "d5e6f708", MarkIn: "0000002a", MarkOut: "0000002b"},
		{Protocol: "ESP"}, // being set up: no SPIs yet
	}}
	k, err := keysOf(s)
	if err != nil || len(k.Children) != 1 || k.Children[0] != (ChildKeys{Protocol: "ESP", SPIIn: 0xc1a2b3c4, SPIOut: 0xd5e6f708, MarkIn: 42, MarkOut: 43}) {
		t.Errorf("keys %+v %v", k, err)
	}
	s.Children[0].SPIOut = "zz"
	if _, err := keysOf(s); !errors.Is(err, ErrDecode) {
		t.Errorf("bad SPI: %v, want ErrDecode", err)
	}
}

// With Absent, only the primary's "not there" is remembered; another
// failure (charon skipped the busy SA while the keys were read) falls back
// for that reading only.
func TestPreferredCountersAbsent(t *testing.T) {
	a := mobike.SARef{Conn: "a", UniqueID: 1}
	kernel := &sourceFake{src: mobike.CounterSourceXFRM}
	charon := &sourceFake{src: mobike.CounterSourceVICI, has: map[mobike.SARef]bool{a: true}}
	errBusy := errors.New("IKE_SA busy")
	var fail error
	primary := readerFunc(func(ctx context.Context, ref mobike.SARef) (Counters, error) {
		if fail != nil {
			return Counters{}, fail
		}
		return kernel.SACounters(ctx, ref)
	})
	p := NewPreferredCounters(primary, charon, PreferOptions{Absent: func(err error) bool { return errors.Is(err, errNoState) }})
	ctx := context.Background()
	fail = errBusy
	if n, err := p.SACounters(ctx, a); err != nil || n.Source != mobike.CounterSourceVICI {
		t.Fatalf("busy: %+v %v", n, err)
	}
	fail = nil
	kernel.has = map[mobike.SARef]bool{a: true}
	if n, err := p.SACounters(ctx, a); err != nil || n.Source != mobike.CounterSourceXFRM {
		t.Errorf("after a busy SA: %+v %v, want the kernel again", n, err)
	}
	kernel.has = nil
	p.SACounters(ctx, a) // absent: remembered
	kernel.has = map[mobike.SARef]bool{a: true}
	if n, _ := p.SACounters(ctx, a); n.Source != mobike.CounterSourceVICI {
		t.Errorf("absent not remembered: %+v", n)
	}
}

type readerFunc func(context.Context, mobike.SARef) (Counters, error)

func (f readerFunc) SACounters(ctx context.Context, ref mobike.SARef) (Counters, error) {
	return f(ctx, ref)
}
