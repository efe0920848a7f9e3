package probe

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

var (
	pairA = mobike.Pair{Local: netip.MustParseAddr("10.1.0.2"), Remote: netip.MustParseAddr("10.3.0.2")}
	pairB = mobike.Pair{Local: netip.MustParseAddr("10.2.0.2"), Remote: netip.MustParseAddr("10.3.0.2")}
)

// newTestManager returns a Manager on a virtual clock and in-memory network,
// with jitter off so that the schedule is exact.
func newTestManager(t *testing.T, prof Profiles) (*Manager, *fakeClock, *fakeNet) {
	t.Helper()
	c := newFakeClock()
	n := newFakeNet(c)
	if prof.Jitter == 0 {
		prof.Jitter = -1
	}
	m := NewManager(Options{Clock: c, Profiles: prof, Coalesce: -1, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeICMP: n, mobike.ProbeSTAMP: n}})
	t.Cleanup(func() { m.Close() })
	return m, c, n
}

func start(t *testing.T, m *Manager, p mobike.Pair, uplink string, prof mobike.ProbeProfile) {
	t.Helper()
	if err := m.Apply(mobike.ActProbeStart{Pair: p, Uplink: uplink, LinkIdx: 2, Method: mobike.ProbeICMP, Profile: prof}); err != nil {
		t.Fatal(err)
	}
}

func drain(m *Manager) []mobike.EvProbeResult {
	var out []mobike.EvProbeResult
	for {
		select {
		case ev := <-m.Events():
			out = append(out, ev.(mobike.EvProbeResult))
		default:
			return out
		}
	}
}

func TestPacingPerProfile(t *testing.T) {
	tests := []struct {
		profile mobike.ProbeProfile
		run     time.Duration
		want    int // probes sent, the first at t=0
	}{
		{mobike.ProfileActive, 2 * time.Second, 11},
		{mobike.ProfileStandby, 10 * time.Second, 11},
		{mobike.ProfileMeteredStandby, 100 * time.Second, 11},
	}
	for _, tc := range tests {
		t.Run(tc.profile.String(), func(t *testing.T) {
			m, c, n := newTestManager(t, Profiles{})
			start(t, m, pairA, "eth0", tc.profile)
			c.Advance(tc.run)
			if got := len(n.sendTimes(pairA)); got != tc.want {
				t.Fatalf("sent %d probes in %v, want %d", got, tc.run, tc.want)
			}
			evs := drain(m)
			if len(evs) != tc.want-1 { // the probe sent at the end is in flight
				t.Fatalf("%d events, want %d", len(evs), tc.want-1)
			}
			last := evs[len(evs)-1]
			if !last.OK || last.RTT != 10*time.Millisecond || last.Stats.LossRatio != 0 || last.Pair != pairA || last.Method != mobike.ProbeICMP {
				t.Fatalf("last event %+v", last)
			}
		})
	}
}

func TestJitterSpreadsIntervals(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{Jitter: 0.1})
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(20 * time.Second)
	ts := n.sendTimes(pairA)
	distinct := map[time.Duration]bool{}
	for i := 1; i < len(ts); i++ {
		d := ts[i].Sub(ts[i-1])
		if d < 180*time.Millisecond || d > 220*time.Millisecond {
			t.Fatalf("interval %v outside 200ms ± 10%%", d)
		}
		distinct[d] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct intervals: jitter not applied", len(distinct))
	}
}

// downVerdict is the core's consecutive-loss rule (mobike classify): K
// losses in a row, and no confirmation burst in flight.
func downVerdict(ev mobike.EvProbeResult, k int) bool {
	return ev.Stats.ConsecLost >= k && !ev.Stats.Confirming
}

// windowDownVerdict is the core's window rule: half the window lost, at
// least 2K probes sent, no burst in flight.
func windowDownVerdict(ev mobike.EvProbeResult, k int) bool {
	return ev.Stats.Sent >= uint64(2*k) && ev.Stats.LossRatio >= 0.5 && !ev.Stats.Confirming
}

// blackholeDetection returns how long after the impairment the core's
// down verdict (K = 3) became possible, and the events up to it.
func blackholeDetection(t *testing.T, prof Profiles) (time.Duration, []mobike.EvProbeResult) {
	m, c, n := newTestManager(t, prof)
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(1030 * time.Millisecond) // mid-interval
	drain(m)
	tb := c.Now()
	n.set(func(n *fakeNet) { n.drop = func(mobike.Pair, uint32) bool { return true } })
	var seen []mobike.EvProbeResult
	for range 5000 {
		c.Advance(time.Millisecond)
		for _, ev := range drain(m) {
			if ev.OK {
				t.Fatalf("reply after blackhole: %+v", ev)
			}
			seen = append(seen, ev)
			if downVerdict(ev, 3) {
				return ev.At.Sub(tb), seen
			}
		}
	}
	t.Fatal("down verdict never possible")
	return 0, nil
}

// TestBlackholeConfirmationBurst: with the defaults (adaptive timeout, 10ms
// RTT, so the 100ms floor), the first miss starts a burst of 3 probes a third
// of the timeout apart, each with the once backed-off timeout; the core may
// declare the pair down when the last of them times out, whatever the
// interval.
func TestBlackholeConfirmationBurst(t *testing.T) {
	p := DefaultProfiles()
	for _, interval := range []time.Duration{200 * time.Millisecond, time.Second} {
		got, evs := blackholeDetection(t, Profiles{Active: interval})
		// next probe ≤ interval after the blackhole; miss after 100ms; the
		// last burst probe leaves 2×33ms later and times out after 200ms
		rto := p.MinTimeout
		bound := interval + rto + 2*(rto/3) + 2*rto
		if got > bound || got < rto+2*(rto/3)+2*rto {
			t.Errorf("interval %v: down verdict after %v, want ≤ %v", interval, got, bound)
		}
		last := evs[len(evs)-1]
		if last.Stats.ConsecLost < 4 || last.Stats.RTO <= rto {
			t.Errorf("interval %v: verdict event %+v: want ≥ 4 losses and a backed-off RTO", interval, last.Stats)
		}
		for _, ev := range evs[:len(evs)-1] {
			if !ev.Stats.Confirming {
				t.Errorf("interval %v: loss before the verdict without a burst in flight: %+v", interval, ev.Stats)
			}
		}
	}
	// without the burst the same blackhole takes ≈ 3 intervals
	slow, _ := blackholeDetection(t, Profiles{Burst: -1, Active: time.Second})
	if slow < 2*time.Second {
		t.Fatalf("1s interval without a burst: verdict after %v", slow)
	}
}

func TestBackoffAndRecovery(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	start(t, m, pairA, "eth0", mobike.ProfileStandby)
	c.Advance(2500 * time.Millisecond)
	n.set(func(n *fakeNet) { n.drop = func(mobike.Pair, uint32) bool { return true } })
	c.Advance(10 * time.Minute)
	ts := n.sendTimes(pairA)
	last := ts[len(ts)-1].Sub(ts[len(ts)-2])
	if last != 30*time.Second {
		t.Fatalf("backed-off interval %v, want the 30s cap", last)
	}
	// the gaps grow: 1s, ..., then 2,4,8,16,30
	var gaps []time.Duration
	for i := len(ts) - 8; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	for i := 1; i < len(gaps); i++ {
		if gaps[i] < gaps[i-1] && gaps[i-1] != 20*time.Millisecond {
			t.Fatalf("gaps shrink while dead: %v", gaps)
		}
	}
	evs := drain(m)
	if ev := evs[len(evs)-1]; ev.OK || ev.Stats.ConsecLost < 20 || ev.Stats.LossRatio <= 0.5 {
		t.Fatalf("last event while dead %+v", ev)
	}
	// recovery: one reply resets the streak and the pace returns to 1s at
	// once: the probe after the first reply is sent one base interval after
	// that reply, not one backed-off interval after the previous probe.
	n.set(func(n *fakeNet) { n.drop = nil })
	before := len(n.sendTimes(pairA))
	c.Advance(31 * time.Second)
	c.Advance(5 * time.Second)
	ts = n.sendTimes(pairA)
	if d := ts[len(ts)-1].Sub(ts[len(ts)-2]); d != time.Second {
		t.Fatalf("interval after recovery %v, want 1s", d)
	}
	if first, second := ts[before], ts[before+1]; second.Sub(first) > time.Second+50*time.Millisecond {
		t.Fatalf("second probe after recovery came %v after the first, want about 1s", second.Sub(first))
	}
	if ev := drain(m); !ev[len(ev)-1].OK || ev[len(ev)-1].Stats.ConsecLost != 0 {
		t.Fatalf("after recovery %+v", ev[len(ev)-1])
	}
}

func TestNonceMustMatch(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	n.set(func(n *fakeNet) { n.badNonce = true })
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(3 * time.Second)
	evs := drain(m)
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	for _, ev := range evs {
		if ev.OK {
			t.Fatalf("reply with a wrong nonce counted: %+v", ev)
		}
	}
}

func TestRetuneStopClose(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	start(t, m, pairB, "eth1", mobike.ProfileStandby)
	c.Advance(1 * time.Second)
	start(t, m, pairA, "eth0", mobike.ProfileStandby) // retune: slower
	start(t, m, pairB, "eth1", mobike.ProfileActive)  // retune: faster
	before := len(n.sendTimes(pairA))
	beforeB := len(n.sendTimes(pairB))
	c.Advance(2 * time.Second)
	if got := len(n.sendTimes(pairA)) - before; got != 3 { // at the retune, then every 1s
		t.Fatalf("pair A sent %d probes in 2s of standby", got)
	}
	if got := len(n.sendTimes(pairB)) - beforeB; got != 11 { // at the retune, then every 200ms
		t.Fatalf("pair B sent %d probes in 2s of active", got)
	}
	s := m.Stats()
	if len(s.Pairs) != 2 || s.Pairs[0].Pair != pairA || s.Pairs[0].Profile != mobike.ProfileStandby || s.Pairs[1].Uplink != "eth1" {
		t.Fatalf("snapshot %+v", s.Pairs)
	}
	if s.UplinkBytes["eth0"] != uint64(72*len(n.sendTimes(pairA))) || s.UplinkBytes["eth1"] != uint64(72*len(n.sendTimes(pairB))) {
		t.Fatalf("uplink bytes %v", s.UplinkBytes)
	}
	if s.Pairs[0].Stats.BytesSent != s.UplinkBytes["eth0"] {
		t.Fatalf("pair bytes %d", s.Pairs[0].Stats.BytesSent)
	}
	if err := m.Apply(mobike.ActProbeStop{Pair: pairA}); err != nil {
		t.Fatal(err)
	}
	drain(m)
	stopped := len(n.sendTimes(pairA))
	c.Advance(5 * time.Second)
	if len(n.sendTimes(pairA)) != stopped {
		t.Fatal("stopped prober still sends")
	}
	for _, ev := range drain(m) {
		if ev.Pair == pairA {
			t.Fatalf("event for a stopped pair: %+v", ev)
		}
	}
	if err := m.Apply(mobike.ActProbeStart{Pair: pairA, Method: mobike.ProbeMethod(9)}); err == nil {
		t.Fatal("unknown method accepted")
	}
	m.Close()
	if err := m.Apply(mobike.ActProbeStop{Pair: pairB}); err != ErrClosed {
		t.Fatalf("apply after close: %v", err)
	}
	for range m.Events() { // closed by Close
	}
}

func TestNATVerdictCarried(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	n.set(func(n *fakeNet) { n.nat = mobike.NATPresent })
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(time.Second)
	evs := drain(m)
	if evs[len(evs)-1].Stats.NAT != mobike.NATPresent {
		t.Fatalf("nat %v", evs[len(evs)-1].Stats.NAT)
	}
}

func TestEventsDroppedWhenConsumerStalls(t *testing.T) {
	c := newFakeClock()
	n := newFakeNet(c)
	m := NewManager(Options{Clock: c, EventBuffer: 4, Profiles: Profiles{Jitter: -1}, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeICMP: n}})
	defer m.Close()
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(2 * time.Second)
	if s := m.Stats(); s.EventsDropped != 6 {
		t.Fatalf("dropped %d, want 10-4", s.EventsDropped)
	}
}

func TestFuncTransport(t *testing.T) {
	c := newFakeClock()
	calls := make(chan Path, 100)
	ft := NewFuncTransport(func(ctx context.Context, p Path) (Outcome, error) {
		calls <- p
		return Outcome{OK: true, RTT: 30 * time.Millisecond, NAT: mobike.NATPresent}, nil
	}, c, time.Second)
	m := NewManager(Options{Clock: c, Profiles: Profiles{Jitter: -1}, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeIKE: ft}})
	if err := m.Apply(mobike.ActProbeStart{Pair: pairA, Uplink: "eth0", Method: mobike.ProbeIKE, Profile: mobike.ProfileStandby}); err != nil {
		t.Fatal(err)
	}
	c.Advance(0)
	ev := (<-m.Events()).(mobike.EvProbeResult) // delivered from the probe's goroutine
	if !ev.OK || ev.RTT != 30*time.Millisecond || ev.Method != mobike.ProbeIKE || ev.Stats.NAT != mobike.NATPresent {
		t.Fatalf("event %+v", ev)
	}
	if p := <-calls; p.Pair != pairA || p.Uplink != "eth0" {
		t.Fatalf("probe func got %+v", p)
	}
	m.Close()
}

// TestVerdictOnStreakLongerThanBurst: with an interval shorter than the
// timeout the regular probes' losses outrun the burst. Once the streak holds
// more losses than the burst (the first miss plus Burst lost probes in a
// row, the evidence a lost burst gives), the verdict no longer waits for the
// burst's last deadline; below that every loss still waits for it.
func TestVerdictOnStreakLongerThanBurst(t *testing.T) {
	for _, tc := range []struct {
		name string
		prof Profiles
		// the blackhole comes 20ms before the next regular probe (s1)
		want, wantMax time.Duration
	}{
		// s1 times out at 120ms and starts the burst (b1 at 120ms, b2 at
		// 153ms, b3 at 186ms, each waiting 100ms); the regular probes of
		// 70ms and 120ms time out at 170ms and 220ms, when b1 does: four
		// losses at 220ms, while b2 and b3 are still in flight (286ms).
		{"fixed 100ms timeout, 50ms interval", Profiles{Active: 50 * time.Millisecond, Timeout: 100 * time.Millisecond},
			220 * time.Millisecond, 221 * time.Millisecond},
		// the adaptive timeout with a 25ms floor (10ms RTT): s1 times out at
		// 45ms and starts the burst at twice the floor (b1 at 45ms, b2 at
		// 53.3ms, b3 at 61.7ms, each waiting 50ms); s1's own loss waited
		// only 25ms and does not count towards burst+1, so the verdict is
		// the burst's end, 111.7ms (the regular probe of 70ms ends at 120ms)
		{"adaptive 25ms floor, 50ms interval", Profiles{Active: 50 * time.Millisecond, MinTimeout: 25 * time.Millisecond},
			111 * time.Millisecond, 113 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, evs := blackholeDetection(t, tc.prof)
			if got < tc.want || got > tc.wantMax {
				t.Fatalf("down verdict after %v, want %v..%v", got, tc.want, tc.wantMax)
			}
			last := evs[len(evs)-1]
			if last.Stats.ConsecLost != DefaultProfiles().Burst+1 {
				t.Fatalf("verdict event %+v: want a streak of burst+1", last.Stats)
			}
			for _, ev := range evs[:len(evs)-1] {
				if !ev.Stats.Confirming {
					t.Fatalf("loss %+v before the verdict without a burst in flight", ev.Stats)
				}
			}
		})
	}
}
