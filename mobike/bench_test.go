package mobike

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// benchShape is a host with 4 uplinks and 1 000 connections with one
// initiator SA each, spread over gateways of 4 addresses each.
type benchShape struct {
	name     string
	gateways int  // 1 000 connections over this many gateways (one group each)
	listed   bool // every connection has its own entry in the config
	distinct bool // ... and the entries' settings differ (a move budget each)
}

var benchShapes = []benchShape{
	// The lab's scale setup: 1 000 connections towards one gateway are
	// one steering group (one class: one ranking per evaluation).
	{name: "one-group", gateways: 1},
	// 100 gateways of 10 connections: a result re-evaluates one group.
	{name: "100-groups", gateways: 100},
	// 1 000 gateways, one connection each.
	{name: "1000-groups", gateways: 1000},
	// One group of 1 000 connections each listed in the config with the
	// same settings: still one class.
	{name: "one-group-listed", gateways: 1, listed: true},
	// The pathological case: one group of 1 000 connections with 1 000
	// different policies, 1 000 rankings per evaluation (outside the
	// target: the cost grows with the distinct policies in a group).
	{name: "one-group-1000-policies", gateways: 1, listed: true, distinct: true},
}

// benchController sets up the shape, all pairs operational, every SA on
// uplink 0 → its gateway's first address. It returns the controller, every
// pair, the pairs the SAs are on, and the time.
func benchController(b *testing.B, sh benchShape) (*Controller, []Pair, map[Pair]bool, time.Time) {
	var pol policy.Settings
	const nConns = 1000
	if sh.listed {
		for i := 0; i < nConns; i++ {
			cp := policy.ConnPolicy{Name: fmt.Sprintf("s%04d", i)}
			if sh.distinct {
				cp.MoveBudget = 3 + i
			}
			pol.Conns = append(pol.Conns, cp)
		}
	}
	c := New(Config{Policy: pol})
	ns := NetState{}
	var locals []netip.Addr
	for i := 0; i < 4; i++ {
		ns.Links = append(ns.Links, Link{Index: i + 2, Name: fmt.Sprintf("eth%d", i), Kind: KindEthernet, Up: true})
		l := netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 2})
		locals = append(locals, l)
		ns.Addrs = append(ns.Addrs, Address{Prefix: netip.PrefixFrom(l, 24), LinkIdx: i + 2})
		ns.Gateways = append(ns.Gateways, Gateway{LinkIdx: i + 2, Via: netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 1})})
	}
	gw := func(g, k int) netip.Addr { return netip.AddrFrom4([4]byte{192, byte(g >> 8), byte(g), byte(k + 1)}) }
	now := time.Unix(1000, 0)
	c.Step(now, EvNetState{State: ns})
	var conns []Conn
	var sas []SA
	current := map[Pair]bool{}
	for i := 0; i < nConns; i++ {
		g := i % sh.gateways
		peers := []netip.Addr{gw(g, 0), gw(g, 1), gw(g, 2), gw(g, 3)}
		name := fmt.Sprintf("s%04d", i)
		conns = append(conns, Conn{Name: name, RemoteAddrs: peers})
		sas = append(sas, SA{Conn: name, UniqueID: uint32(i + 1), State: IKEEstablished, Initiator: true,
			Local: netip.AddrPortFrom(locals[0], 4500), Remote: netip.AddrPortFrom(peers[0], 4500)})
		current[Pair{Local: locals[0], Remote: peers[0]}] = true
	}
	c.Step(now, EvConns{Conns: conns})
	c.Step(now, EvSAList{SAs: sas})
	var pairs []Pair
	for g := 0; g < sh.gateways; g++ {
		for _, l := range locals {
			for k := 0; k < 4; k++ {
				pairs = append(pairs, Pair{Local: l, Remote: gw(g, k)})
			}
		}
	}
	for _, p := range pairs {
		c.Step(now, good(p, now))
	}
	now = now.Add(time.Minute)
	c.Step(now, EvTimer{})
	c.TakeTrace()
	if len(c.groups) != sh.gateways || len(c.pairs) != len(pairs) {
		b.Fatalf("%d groups, %d pairs; want %d, %d", len(c.groups), len(c.pairs), sh.gateways, len(pairs))
	}
	return c, pairs, current, now
}

// BenchmarkStepProbeResult is the per-event cost of an EvProbeResult in
// steady state: replies with RTT jitter that does not change any pair's
// ranking inputs (the common case: 16 pairs probed every 0.2–5 s).
func BenchmarkStepProbeResult(b *testing.B) {
	c, pairs, _, now := benchController(b, benchShapes[0])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		ev := good(pairs[i%len(pairs)], now)
		ev.RTT = time.Duration(11+i%3) * time.Millisecond
		ev.Stats.SRTT = ev.RTT
		ev.Stats.Sent = uint64(10 + i)
		ev.Stats.Received = ev.Stats.Sent
		if acts := c.Step(now, ev); len(acts) != 0 {
			b.Fatalf("unexpected actions %v", acts)
		}
		c.TakeTrace()
	}
}

// BenchmarkStepProbeResultRerank is the worst case: every result changes a
// pair's RTT class, so the steering group that uses its peer address is
// evaluated again (once per class of members with equal ranking inputs, not
// once per connection). The pairs are taken in turn, never a current one.
func BenchmarkStepProbeResultRerank(b *testing.B) {
	// Two RTTs in different ranking classes (both within the SLA).
	rtts := [2]time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	for policy.RTTClass(rtts[1]) == policy.RTTClass(rtts[0]) {
		rtts[1] += time.Millisecond
	}
	for _, sh := range benchShapes {
		b.Run(sh.name, func(b *testing.B) {
			c, all, current, now := benchController(b, sh)
			var pairs []Pair
			for _, p := range all {
				if !current[p] {
					pairs = append(pairs, p)
				}
			}
			steers := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Millisecond)
				ev := good(pairs[i%len(pairs)], now)
				ev.Stats.SRTT = rtts[(i/len(pairs))%2]
				for _, a := range c.Step(now, ev) {
					if _, ok := a.(ActRouting); ok {
						steers++
					}
				}
				c.TakeTrace()
			}
			if steers > 0 {
				b.Fatalf("%d routing changes: the benchmark should only re-rank", steers)
			}
		})
	}
}

// BenchmarkStepSAMove is the cost of one SA event while a steering group of
// 1 000 connections moves: each iteration blackholes the group's pair
// (forced move) and feeds charon's 1 000 ike-updates until the move is
// confirmed. ns/op is per ike-update.
func BenchmarkStepSAMove(b *testing.B) {
	c, _, _, now := benchController(b, benchShapes[0])
	const n = 1000
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for i := 0; events < b.N; i++ {
		g := c.groups[0]
		from := g.pair
		now = now.Add(time.Second)
		c.Step(now, lost(from, now, 3))
		to := g.pair
		if g.pending == nil || to == from {
			b.Fatalf("cycle %d: no forced move off %s", i, from)
		}
		for id := uint32(1); id <= n; id++ {
			if events == b.N {
				return // exactly b.N ike-updates, the last cycle cut short
			}
			now = now.Add(100 * time.Microsecond)
			c.Step(now, EvIKEUpdate{Conn: c.sas[id].sa.Conn, UniqueID: id,
				NewLocal: netip.AddrPortFrom(to.Local, 4500), NewRemote: netip.AddrPortFrom(to.Remote, 4500)})
			events++
		}
		if g.pending != nil {
			b.Fatalf("cycle %d: move to %s not confirmed", i, to)
		}
		// The old pair answers again (and is stable before the next cycle).
		c.Step(now, good(from, now))
		now = now.Add(time.Minute)
		c.Step(now, good(from, now))
		c.TakeTrace()
	}
}

// BenchmarkStepTraffic is the per-event cost of a counter reading of a
// group's watched SA (traffic flowing both ways: no hint), one group of
// 1 000 connections.
func BenchmarkStepTraffic(b *testing.B) {
	c, _, _, now := benchController(b, benchShapes[0])
	if len(c.watchList) != 1 {
		b.Fatalf("watch %v", c.watchList)
	}
	ref := c.watchList[0]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(100 * time.Millisecond)
		n := uint64(10 * (i + 1))
		if acts := c.Step(now, EvTraffic{SA: ref, At: now, PacketsIn: n, PacketsOut: n}); len(acts) != 0 {
			b.Fatalf("unexpected actions %v", acts)
		}
	}
}
