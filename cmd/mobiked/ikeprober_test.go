package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor/probe"
	"github.com/mobiked/mobiked/monitor/probe/ike"
)

// TestIKEProberBudget: a pair's first probe offers the acceptable proposal
// (it alone yields a NAT verdict), later ones within ikeFullEvery offer the
// refused one; a local address gets at most ikeFullBudget accepted probes
// per ikeHalfOpenLife over all its pairs, so the peer never holds
// block_threshold (5) half-open SAs of ours; the budget refills as they
// expire. A refused probe's NO_PROPOSAL_CHOSEN answer is a reply.
func TestIKEProberBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var offered []bool // per probe: acceptable proposal offered
	p := newIKEProber()
	p.now = func() time.Time { return now }
	p.run = func(_ context.Context, cfg ike.Config) (ike.Result, error) {
		full := len(cfg.Proposals) == 0
		offered = append(offered, full)
		nat := mobike.NATUnknown
		if full {
			nat = mobike.NATNone
		}
		return ike.Result{Reachable: true, RTT: time.Millisecond, NAT: nat}, nil
	}
	l1, l2 := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2")
	pair := func(l netip.Addr, r int) probe.Path {
		return probe.Path{Pair: mobike.Pair{Local: l, Remote: netip.AddrFrom4([4]byte{10, 3, 0, byte(r)})}, Uplink: "eth0"}
	}
	run := func(pp probe.Path) bool {
		t.Helper()
		out, err := p.probe(context.Background(), pp)
		if err != nil || !out.OK {
			t.Fatalf("probe %v: %+v, %v", pp.Pair, out, err)
		}
		full := offered[len(offered)-1]
		if (out.NAT != mobike.NATUnknown) != full {
			t.Fatalf("probe %v: NAT %v with full=%v", pp.Pair, out.NAT, full)
		}
		return full
	}
	steps := []struct {
		at   time.Duration
		path probe.Path
		full bool
	}{
		{0, pair(l1, 1), true},                       // first probe of the pair
		{200 * time.Millisecond, pair(l1, 1), false}, // active interval: refused
		{400 * time.Millisecond, pair(l1, 1), false},
		{0, pair(l1, 2), true},                 // another pair of l1
		{0, pair(l1, 3), true},                 // third: the budget of l1 is used up
		{0, pair(l1, 4), false},                // a fourth pair waits
		{0, pair(l2, 1), true},                 // another local address has its own budget
		{29 * time.Second, pair(l1, 4), false}, // still within the half-open life
		{1 * time.Second, pair(l1, 4), true},   // 30 s: the first three expired
		{0, pair(l1, 1), true},                 // and the first pair is due again
		{0, pair(l1, 2), true},
		{0, pair(l1, 3), false}, // budget again
	}
	for i, s := range steps {
		now = now.Add(s.at)
		if got := run(s.path); got != s.full {
			t.Fatalf("step %d (%v at +%v): acceptable proposal offered %v, want %v", i, s.path.Pair, s.at, got, s.full)
		}
	}
}
