package mobike

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// benchController: 4 uplinks × 4 peer addresses (16 shared pairs), 1 000
// connections with one initiator SA each (the lab's 1 000-SA setup), all
// pairs operational, every SA on uplink 0 → peer 0.
func benchController(b *testing.B) (*Controller, []Pair, time.Time) {
	c := New(Config{})
	ns := NetState{}
	var locals, peers []netip.Addr
	for i := 0; i < 4; i++ {
		ns.Links = append(ns.Links, Link{Index: i + 2, Name: fmt.Sprintf("eth%d", i), Kind: KindEthernet, Up: true})
		l := netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 2})
		locals = append(locals, l)
		ns.Addrs = append(ns.Addrs, Address{Prefix: netip.PrefixFrom(l, 24), LinkIdx: i + 2})
		ns.Gateways = append(ns.Gateways, Gateway{LinkIdx: i + 2, Via: netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 1})})
		peers = append(peers, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}))
	}
	now := time.Unix(1000, 0)
	c.Step(now, EvNetState{State: ns})
	var conns []Conn
	var sas []SA
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("s%d", i)
		conns = append(conns, Conn{Name: name, RemoteAddrs: peers})
		sas = append(sas, SA{Conn: name, UniqueID: uint32(i + 1), State: IKEEstablished, Initiator: true,
			Local: netip.AddrPortFrom(locals[0], 4500), Remote: netip.AddrPortFrom(peers[0], 4500)})
	}
	c.Step(now, EvConns{Conns: conns})
	c.Step(now, EvSAList{SAs: sas})
	var pairs []Pair
	for _, l := range locals {
		for _, r := range peers {
			pairs = append(pairs, Pair{Local: l, Remote: r})
		}
	}
	for _, p := range pairs {
		c.Step(now, good(p, now))
	}
	now = now.Add(time.Minute)
	c.Step(now, EvTimer{})
	c.TakeTrace()
	return c, pairs, now
}

// BenchmarkStepProbeResult is the per-event cost of an EvProbeResult in
// steady state: replies with RTT jitter that does not change any pair's
// ranking inputs (the common case: 16 pairs probed every 0.2–5 s).
func BenchmarkStepProbeResult(b *testing.B) {
	c, pairs, now := benchController(b)
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
// pair's RTT class, so all 1 000 connections that use its peer address are
// re-evaluated (one ranking shared by the equal ones).
func BenchmarkStepProbeResultRerank(b *testing.B) {
	c, pairs, now := benchController(b)
	// Two RTTs in different ranking classes (both within the SLA).
	rtts := [2]time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	for policy.RTTClass(rtts[1]) == policy.RTTClass(rtts[0]) {
		rtts[1] += time.Millisecond
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		p := pairs[1+i%(len(pairs)-1)] // never the current pair
		ev := good(p, now)
		ev.Stats.SRTT = rtts[(i/(len(pairs)-1))%2]
		c.Step(now, ev)
		c.TakeTrace()
	}
}
