package mobike

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// A responder (central gateway) sees road-warrior clients come and go, each
// from its own address under one connection. What the core keeps about a
// client (learned peer address, interned peer set, monitored pair) must go
// with its last SA.

const churnLive = 50 // clients connected at any time

func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)})
}

// churn brings clients from..to-1 up, each replacing the oldest one once
// churnLive are connected.
func churn(c *Controller, now time.Time, from, to int) time.Time {
	local := netip.AddrPortFrom(ip("10.1.0.2"), 4500)
	for i := from; i < to; i++ {
		now = now.Add(10 * time.Millisecond)
		c.Step(now, EvSAUp{SA: SA{Conn: "rw", UniqueID: uint32(i + 1), State: IKEEstablished,
			Local: local, Remote: netip.AddrPortFrom(clientAddr(i), 4500)}})
		if i >= churnLive {
			c.Step(now, EvSADown{Conn: "rw", UniqueID: uint32(i - churnLive + 1)})
		}
		c.TakeTrace()
	}
	return now
}

func responder() (*Controller, time.Time) {
	c := New(Config{})
	now := t0
	c.Step(now, EvNetState{State: laptopNet()})
	c.Step(now, EvConns{Conns: []Conn{{Name: "rw"}}}) // remote_addrs = %any
	c.Step(now, EvSAList{})
	return c, now
}

func TestResponderChurnBounded(t *testing.T) {
	c, now := responder()
	churn(c, now, 0, 2000)
	cn := c.conns["rw"]
	if len(c.sas) != churnLive || len(cn.learned) != churnLive || len(cn.peers) != churnLive {
		t.Errorf("after 2 000 clients: %d SAs, %d learned, %d peers; want %d each", len(c.sas), len(cn.learned), len(cn.peers), churnLive)
	}
	if len(c.groupOf) != churnLive || len(c.saOn) != churnLive {
		t.Errorf("%d addresses in groups, %d occupied pairs; want %d each", len(c.groupOf), len(c.saOn), churnLive)
	}
	if len(c.pairs) > churnLive || len(c.remotes) != churnLive {
		t.Errorf("%d pairs, %d remotes; want at most %d", len(c.pairs), len(c.remotes), churnLive)
	}
	if d, _ := c.Desired(); len(d.Groups) != 0 {
		t.Errorf("a responder got routing entries: %s", d)
	}
	// Everything goes with the last SA.
	c.Step(now, EvSAList{})
	if len(cn.learned) != 0 || len(cn.peers) != 0 || len(c.pairs) != 0 || len(c.groupOf) != 0 || len(c.saOn) != 0 || len(c.remotes) != 0 {
		t.Errorf("after the last SA: %d learned, %d peers, %d pairs, %d addresses in groups, %d occupied pairs, %d remotes",
			len(cn.learned), len(cn.peers), len(c.pairs), len(c.groupOf), len(c.saOn), len(c.remotes))
	}
}

func heapKiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / 1024
}

// BenchmarkResponderChurn churns 10 000 clients (50 connected at a time)
// through the core and reports the live heap after 1 000 and after 10 000
// clients: a flat heap means nothing per client outlives it.
func BenchmarkResponderChurn(b *testing.B) {
	var at1k, at10k float64
	var spent time.Duration
	for b.Loop() {
		c, now := responder()
		start := time.Now()
		now = churn(c, now, 0, 1000)
		spent += time.Since(start)
		at1k = heapKiB()
		start = time.Now()
		churn(c, now, 1000, 10000)
		spent += time.Since(start)
		at10k = heapKiB()
		runtime.KeepAlive(c)
	}
	b.ReportMetric(at1k, "heap-KiB@1k")
	b.ReportMetric(at10k, "heap-KiB@10k")
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N)/10000, "ns/client")
}
