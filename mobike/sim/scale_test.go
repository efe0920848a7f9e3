package sim_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/sim"
)

// heapBytes is the live heap after a collection.
func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// coreHeap is the heap held by the world's controller: the live heap with
// it, minus the live heap without it (the world loses its controller).
func coreHeap(w *sim.World) uint64 {
	with := heapBytes()
	w.Ctl = nil
	without := heapBytes()
	runtime.KeepAlive(w)
	if with < without {
		return 0
	}
	return with - without
}

// TestScaleFailover runs 1 000 SAs over 100 connections (100 steering
// groups, 4 uplinks, 2 peer addresses each: 800 pairs) through a blackhole of
// the uplink every SA is on: every SA moves within seconds of virtual time,
// and the steers are per group, not per SA, one each: a group whose current
// pair misses the SLA on its way down does not move to the other peer
// address on the same uplink before that pair answered a confirmation burst
// (its standby prober has not noticed the blackhole yet), and the forced
// move confirms its candidates. Both the legacy prober model (1 s timeout, no
// bursts) and monitor/probe's (the lab profile: 200 ms active, 1 s standby,
// a 3-probe burst at the first loss, a 100 ms timeout as the adaptive floor
// gives a low-RTT path).
func TestScaleFailover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		probes sim.ProbeModel
		within time.Duration
	}{
		{"legacy", sim.ProbeModel{}, 5 * time.Second},
		{"bursts", sim.ProbeModel{Timeout: 100 * time.Millisecond, Active: 200 * time.Millisecond, Standby: time.Second, Burst: 3}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sim.Scale{SAs: 1000, Conns: 100, Uplinks: 4, PeerAddrs: 2, Seed: 1, Probes: tc.probes}
			w := s.NewWorld()
			r := s.RunScale(w)
			if r.Groups != 100 || r.Pairs != 800 {
				t.Errorf("%d groups, %d pairs; want 100, 800", r.Groups, r.Pairs)
			}
			if r.Moved != 1000 || r.AllMoved == 0 || r.AllMoved > tc.within {
				t.Errorf("%d SAs moved, all after %s; want 1000 within %s", r.Moved, r.AllMoved, tc.within)
			}
			if r.Steers != 100 || r.MaxGroupSteers != 1 {
				t.Errorf("%d steers after the blackhole, at most %d by one group; want one per group", r.Steers, r.MaxGroupSteers)
			}
			t.Logf("all moved after %s, %d steers", r.AllMoved, r.Steers)
		})
	}
}

// BenchmarkScale measures the core in the simulator at 100, 1 000 and
// 10 000 SAs over 100 connections (100 groups) and 4 uplinks with 2 peer
// addresses per gateway (800 probed pairs), and at 10 000 SAs over 1 000
// connections (8 000 pairs): 70 s of virtual time to settle, then a
// blackhole of the uplink every SA is on and 30 s more.
//
//	go test -run '^$' -bench Scale -benchtime 1x ./mobike/sim/
//
// Metrics: decisions/s (events decided per second spent in Step), the
// wall-clock time in Step before (setup-ms: the SA list, the first probe
// results and verdicts) and after the blackhole (move-ms: probe results,
// the forced steers, one ike-update per SA), the events of the move phase,
// the steers and routing states it issued, when the last SA moved (virtual),
// and the heap the controller holds (core-KiB, per-SA-B).
func BenchmarkScale(b *testing.B) {
	for _, sh := range []struct{ sas, conns int }{{100, 100}, {1000, 100}, {10000, 100}, {10000, 1000}} {
		n := sh.sas
		b.Run(fmt.Sprintf("sas=%d/conns=%d", n, sh.conns), func(b *testing.B) {
			s := sim.Scale{SAs: n, Conns: sh.conns, Uplinks: 4, PeerAddrs: 2, Seed: 1}
			var r sim.ScaleResult
			var heap uint64
			for b.Loop() {
				w := s.NewWorld()
				r = s.RunScale(w)
				b.StopTimer()
				heap = coreHeap(w)
				b.StartTimer()
			}
			if r.Moved != n {
				b.Fatalf("%d of %d SAs moved", r.Moved, n)
			}
			b.ReportMetric(r.DecisionsPerSecond(), "decisions/s")
			b.ReportMetric(float64(r.SetupTime.Microseconds())/1000, "setup-ms")
			b.ReportMetric(float64(r.SetupSteps), "setup-events")
			b.ReportMetric(float64(r.MoveTime.Microseconds())/1000, "move-ms")
			b.ReportMetric(float64(r.ProbeResults), "move-probe-results")
			b.ReportMetric(float64(r.SAEvents), "move-SA-events")
			b.ReportMetric(float64(r.Steers), "steers")
			b.ReportMetric(float64(r.RoutingStates), "routing-states")
			b.ReportMetric(r.AllMoved.Seconds(), "all-moved-s")
			b.ReportMetric(float64(heap)/1024, "core-KiB")
			b.ReportMetric(float64(heap)/float64(n), "per-SA-B")
			b.ReportMetric(float64(r.Groups), "groups")
			b.ReportMetric(float64(r.Pairs), "pairs")
		})
	}
}
