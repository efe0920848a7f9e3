package probe

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

func TestTimeoutRFC6298(t *testing.T) {
	ms := time.Millisecond
	adaptive := DefaultProfiles()
	fixed := Profiles{Timeout: 250 * ms}.withDefaults()
	tests := []struct {
		name           string
		prof           Profiles
		srtt, rttvar   time.Duration
		have           bool
		backoff        int
		want, wantBase time.Duration
	}{
		{"no sample: initial", adaptive, 0, 0, false, 0, time.Second, time.Second},
		{"low RTT: floor", adaptive, 10 * ms, ms, true, 0, 100 * ms, 100 * ms},
		{"SRTT + 4 RTTVAR", adaptive, 300 * ms, 20 * ms, true, 0, 380 * ms, 380 * ms},
		{"no variance: SRTT + G", adaptive, 300 * ms, 0, true, 0, 301 * ms, 301 * ms},
		{"one backoff doubles", adaptive, 300 * ms, 20 * ms, true, 1, 760 * ms, 380 * ms},
		{"backoff capped", adaptive, 300 * ms, 20 * ms, true, 5, 2 * time.Second, 380 * ms},
		{"ceiling", adaptive, 1900 * ms, 100 * ms, true, 0, 2 * time.Second, 2 * time.Second},
		{"floor backs off too", adaptive, ms, 0, true, 2, 400 * ms, 100 * ms},
		{"fixed override", fixed, 10 * ms, ms, true, 0, 250 * ms, 250 * ms},
		{"fixed never backs off", fixed, 300 * ms, 20 * ms, true, 4, 250 * ms, 250 * ms},
		{"fixed before a sample", fixed, 0, 0, false, 0, 250 * ms, 250 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.prof.timeout(tc.srtt, tc.rttvar, tc.have, tc.backoff); got != tc.want {
				t.Errorf("timeout = %v, want %v", got, tc.want)
			}
			if got := tc.prof.baseTimeout(tc.srtt, tc.rttvar, tc.have); got != tc.wantBase {
				t.Errorf("base timeout = %v, want %v", got, tc.wantBase)
			}
		})
	}
	if g := adaptive.burstGap(300 * ms); g != 100*ms {
		t.Errorf("burst gap %v, want a third of the timeout", g)
	}
	if g := (Profiles{BurstGap: 20 * ms}).withDefaults().burstGap(300 * ms); g != 20*ms {
		t.Errorf("configured burst gap %v", g)
	}
	if d := DefaultProfiles(); d.Burst != 3 || d.DownAfter != 3 {
		t.Errorf("default burst %d for K %d, want 3 (the core's K)", d.Burst, d.DownAfter)
	}
}

// uniformRTT returns RTTs uniform in base ± spread from a seeded source.
func uniformRTT(seed uint64, base, spread time.Duration) func() time.Duration {
	r := rand.New(rand.NewPCG(seed, 1))
	return func() time.Duration {
		return base + time.Duration((2*r.Float64()-1)*float64(spread))
	}
}

// run advances the clock in steps, draining events, and returns them.
func runFor(m *Manager, c *fakeClock, d, step time.Duration) []mobike.EvProbeResult {
	var evs []mobike.EvProbeResult
	for end := c.Now().Add(d); c.Now().Before(end); {
		c.Advance(step)
		evs = append(evs, drain(m)...)
	}
	return evs
}

// TestAdaptiveTimeoutSlowPath: a 400ms ± 40ms path under the default
// (adaptive) timeout loses (almost) nothing and is never down; the same path
// with the fixed 250ms timeout of the old default profile loses every probe.
func TestAdaptiveTimeoutSlowPath(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	n.set(func(n *fakeNet) { n.rttFn = uniformRTT(1, 400*time.Millisecond, 40*time.Millisecond) })
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	evs := runFor(m, c, 60*time.Second, 100*time.Millisecond)
	lost := 0
	for _, ev := range evs {
		if downVerdict(ev, 3) {
			t.Fatalf("down verdict on a slow but working path: %+v", ev.Stats)
		}
		if !ev.OK {
			lost++
		}
	}
	last := evs[len(evs)-1].Stats
	if lost*100 > len(evs) || last.RTO < 400*time.Millisecond || last.RTO > 600*time.Millisecond {
		t.Fatalf("%d of %d lost, final RTO %v (SRTT %v)", lost, len(evs), last.RTO, last.SRTT)
	}

	m2, c2, n2 := newTestManager(t, Profiles{Timeout: 250 * time.Millisecond})
	n2.set(func(n *fakeNet) { n.rttFn = uniformRTT(1, 400*time.Millisecond, 40*time.Millisecond) })
	start(t, m2, pairA, "eth0", mobike.ProfileActive)
	lost2 := 0
	evs2 := runFor(m2, c2, 10*time.Second, 100*time.Millisecond)
	for _, ev := range evs2 {
		if !ev.OK {
			lost2++
		}
		if ev.Stats.RTO != 250*time.Millisecond {
			t.Fatalf("fixed timeout: RTO %v", ev.Stats.RTO)
		}
	}
	if lost2 < 40 {
		t.Fatalf("fixed 250ms timeout on a 400ms path: only %d lost", lost2)
	}
}

// TestRTTStepNoFalseDown: the RTT jumps from 10ms to 300ms ± 50ms (a
// satellite hop, a bloated queue), 3 s after the prober started (a young
// loss window). The probes in flight time out, but their late replies end
// each streak and turn back into deliveries, the timeout backs off and then
// adapts: no down verdict by either of the core's rules, and the losses stop
// within a few seconds.
func TestRTTStepNoFalseDown(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	runFor(m, c, 3*time.Second, 100*time.Millisecond)
	r := rand.New(rand.NewPCG(7, 7))
	n.set(func(n *fakeNet) {
		n.rttFn = func() time.Duration { // 150 ± 25 each way
			return 300*time.Millisecond + time.Duration((r.Float64()+r.Float64()-1)*float64(25*time.Millisecond))
		}
	})
	step := c.Now()
	evs := runFor(m, c, 60*time.Second, 50*time.Millisecond)
	late, timeouts, results := 0, 0, 0
	for i, ev := range evs {
		if downVerdict(ev, 3) || windowDownVerdict(ev, 3) {
			t.Fatalf("down verdict %v after the RTT step: %+v", ev.At.Sub(step), ev.Stats)
		}
		if ev.OK && i > 0 && evs[i-1].Stats.ConsecLost > 0 && ev.Stats.ConsecLost == 0 {
			late++
		}
		if ev.At.Sub(step) > 10*time.Second {
			results++
			if !ev.OK {
				timeouts++
			}
		}
	}
	last := evs[len(evs)-1].Stats
	t.Logf("after the step: %d late replies; %d timeouts of %d results after 10s; final SRTT %v RTO %v loss %.3f",
		late, timeouts, results, last.SRTT, last.RTO, last.LossRatio)
	if late == 0 {
		t.Fatal("no late reply ended a loss streak")
	}
	if timeouts*20 > results || last.LossRatio > 0.02 {
		t.Fatalf("%d of %d probes timed out after the timeout adapted; window loss %.3f", timeouts, results, last.LossRatio)
	}
}

// TestLateReplyEndsStreak: with a fixed 100ms timeout on a 150ms path every
// probe times out, and every late reply proves the pair alive: the streak
// never grows past one loss, and the late RTTs feed SRTT.
func TestLateReplyEndsStreak(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{Timeout: 100 * time.Millisecond, Burst: -1})
	n.set(func(n *fakeNet) { n.rtt = 150 * time.Millisecond })
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	evs := runFor(m, c, 5*time.Second, 10*time.Millisecond)
	oks := 0
	for _, ev := range evs {
		if ev.Stats.ConsecLost > 1 {
			t.Fatalf("streak grew: %+v", ev.Stats)
		}
		if ev.OK {
			oks++
			if ev.RTT != 150*time.Millisecond || ev.Stats.ConsecLost != 0 {
				t.Fatalf("late reply %+v", ev)
			}
		}
	}
	last := evs[len(evs)-1].Stats
	if oks < 20 || last.SRTT != 150*time.Millisecond || last.LossRatio != 0 || last.Received != last.Sent {
		t.Fatalf("%d late replies, stats %+v (a late reply is a delivery, not a loss)", oks, last)
	}
}

// TestRandomLossBurstVsRegular: 20% random loss for one virtual hour at
// 5 probes/s with a fixed 100ms timeout (no backoff, so only the burst
// differs). With the confirmation burst the core's K = 3 rule sees a pair
// down only when the burst was lost as well (≈ p⁴ per probe); without the
// burst, three lost probes in a row suffice (≈ p³). The default adaptive
// timeout is logged too: its backoff lets later replies overtake, which
// helps further.
func TestRandomLossBurstVsRegular(t *testing.T) {
	count := func(prof Profiles) int {
		m, c, n := newTestManager(t, prof)
		r := rand.New(rand.NewPCG(42, 42))
		n.set(func(n *fakeNet) { n.drop = func(mobike.Pair, uint32) bool { return r.IntN(100) < 20 } })
		start(t, m, pairA, "eth0", mobike.ProfileActive)
		downs, down := 0, false
		for range 3600 {
			c.Advance(time.Second)
			for _, ev := range drain(m) {
				switch {
				case ev.OK:
					down = false
				case downVerdict(ev, 3) && !down:
					downs++
					down = true
				}
			}
		}
		return downs
	}
	burst, regular := count(Profiles{Timeout: 100 * time.Millisecond}), count(Profiles{Timeout: 100 * time.Millisecond, Burst: -1})
	adaptive, adaptiveRegular := count(Profiles{}), count(Profiles{Burst: -1})
	t.Logf("down verdicts in 1h at 20%% loss, fixed timeout: %d with the burst, %d without; adaptive: %d with, %d without",
		burst, regular, adaptive, adaptiveRegular)
	if regular < 40 || burst*3 > regular || adaptive > burst {
		t.Fatalf("down verdicts: %d with the burst, %d without", burst, regular)
	}
}

func TestConfirm(t *testing.T) {
	t.Run("answering pair", func(t *testing.T) {
		m, c, n := newTestManager(t, Profiles{})
		start(t, m, pairA, "eth0", mobike.ProfileStandby)
		c.Advance(1500 * time.Millisecond) // probes at 0 and 1s
		drain(m)
		before := len(n.sendTimes(pairA))
		now := c.Now()
		if err := m.Apply(mobike.ActProbeConfirm{Pair: pairA}); err != nil {
			t.Fatal(err)
		}
		ts := n.sendTimes(pairA)
		if len(ts) != before+1 || !ts[len(ts)-1].Equal(now) {
			t.Fatalf("no probe at once: %v", ts[before:])
		}
		c.Advance(400 * time.Millisecond) // before the next regular probe
		if got := len(n.sendTimes(pairA)); got != before+1 {
			t.Fatalf("%d probes after the reply, want the burst to stop at the first reply", got-before)
		}
		evs := drain(m)
		if len(evs) != 1 || !evs[0].OK || !evs[0].Stats.LastReply.Equal(now.Add(10*time.Millisecond)) || evs[0].Stats.Confirming {
			t.Fatalf("events %+v", evs)
		}
	})
	t.Run("silent pair", func(t *testing.T) {
		m, c, n := newTestManager(t, Profiles{})
		start(t, m, pairA, "eth0", mobike.ProfileStandby)
		c.Advance(1500 * time.Millisecond)
		drain(m)
		n.set(func(n *fakeNet) { n.drop = func(mobike.Pair, uint32) bool { return true } })
		before := len(n.sendTimes(pairA))
		now := c.Now()
		m.Apply(mobike.ActProbeConfirm{Pair: pairA})
		m.Apply(mobike.ActProbeConfirm{Pair: pairA}) // in flight: no second burst
		c.Advance(400 * time.Millisecond)
		ts := n.sendTimes(pairA)[before:]
		gap := DefaultProfiles().MinTimeout / 3
		if len(ts) != 3 || !ts[0].Equal(now) || ts[1].Sub(ts[0]) != gap || ts[2].Sub(ts[1]) != gap {
			t.Fatalf("burst sends %v, want 3 probes %v apart from %v", ts, gap, now)
		}
		evs := drain(m)
		if len(evs) != 3 {
			t.Fatalf("%d events", len(evs))
		}
		for i, ev := range evs {
			if ev.OK || ev.Stats.ConsecLost != i+1 || ev.Stats.Confirming != (i < 2) {
				t.Fatalf("event %d: %+v", i, ev.Stats)
			}
		}
		if at := evs[2].At.Sub(now); at != 2*gap+DefaultProfiles().MinTimeout {
			t.Fatalf("verdict possible after %v", at)
		}
	})
	t.Run("unknown pair", func(t *testing.T) {
		m, _, _ := newTestManager(t, Profiles{})
		if err := m.Apply(mobike.ActProbeConfirm{Pair: pairB}); !errors.Is(err, ErrNotProbed) {
			t.Fatalf("confirm of an unprobed pair: %v", err)
		}
	})
}

// TestSchedulerCoalesces: 100 active and 20 standby pairs converge on
// shared rounds — one wake-up, one batch of sends and (for sockets the
// scheduler reads) one read of the replies per round — while every pair
// keeps its interval within the jitter window and the rounds themselves stay
// jittered. Sends land on the 5ms grid of the coalescing quantum.
func TestSchedulerCoalesces(t *testing.T) {
	c := newFakeClock()
	n := newPollNet(c)
	m := NewManager(Options{Clock: c, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeICMP: n}})
	defer m.Close()
	m.rnd = rand.New(rand.NewPCG(5, 5)) // a fixed jitter sequence
	epoch := c.Now()
	var active, standby []mobike.Pair
	for i := range 120 {
		p := mobike.Pair{Local: netip.AddrFrom4([4]byte{10, 1, byte(i / 100), byte(i%100 + 1)}), Remote: netip.MustParseAddr("10.3.0.2")}
		prof := mobike.ProfileActive
		if i >= 100 {
			prof = mobike.ProfileStandby
			standby = append(standby, p)
		} else {
			active = append(active, p)
		}
		start(t, m, p, "eth0", prof)
		c.Advance(time.Duration(i%7) * time.Millisecond) // pairs start at different times
	}
	drain(m)
	w0, sends0 := m.Stats().Wakeups, 0
	n.mu.Lock()
	for _, ts := range n.sends {
		sends0 += len(ts)
	}
	n.mu.Unlock()
	for range 100 {
		c.Advance(100 * time.Millisecond)
		for _, ev := range drain(m) {
			if !ev.OK {
				t.Fatalf("lost probe %+v", ev)
			}
		}
	}
	sends := -sends0
	rounds := map[time.Time]bool{}
	n.mu.Lock()
	for _, ts := range n.sends {
		sends += len(ts)
		for _, at := range ts {
			rounds[at] = true
			if at.Sub(epoch)%DefaultCoalesce != 0 {
				t.Fatalf("probe at %v, off the %v grid", at.Sub(epoch), DefaultCoalesce)
			}
		}
	}
	n.mu.Unlock()
	w := m.Stats().Wakeups - w0
	t.Logf("10s: %d probes in %d wake-ups (%d send rounds overall), %d polls", sends, w, len(rounds), n.polls)
	if sends < 5000 || w > 300 || w*10 > uint64(sends) {
		t.Fatalf("%d probes took %d wake-ups", sends, w)
	}
	check := func(ps []mobike.Pair, iv time.Duration) {
		for _, p := range ps {
			ts := n.sendTimes(p)
			for k := max(1, len(ts)-20); k < len(ts); k++ {
				if d := ts[k].Sub(ts[k-1]); d < iv*9/10-DefaultCoalesce || d > iv*11/10+DefaultCoalesce {
					t.Fatalf("%s: interval %v, want %v ± 10%%", p, d, iv)
				}
			}
		}
	}
	check(active, 200*time.Millisecond)
	check(standby, time.Second)
	// standby probes ride on active rounds
	act := map[time.Time]bool{}
	for _, at := range n.sendTimes(active[0]) {
		act[at] = true
	}
	shared := 0
	sb := n.sendTimes(standby[0])
	for _, at := range sb {
		shared += map[bool]int{true: 1}[act[at]]
	}
	if shared < 2 {
		t.Fatalf("standby probes shared %d of %d active rounds", shared, len(sb))
	}
	// the rounds stay jittered
	ts := n.sendTimes(active[0])
	gaps := map[time.Duration]bool{}
	for k := 1; k < len(ts); k++ {
		gaps[ts[k].Sub(ts[k-1])] = true
	}
	if len(gaps) < 5 {
		t.Fatalf("rounds every %v only: not jittered", gaps)
	}
}

// TestPolledReplies: with a transport whose replies wait in the socket (like
// the real ones), the scheduler reads them at the earliest RTT the pair's
// estimate allows, then ever less often, and always before a timeout; the
// RTTs are the arrival times' (kernel timestamps), not the reads'.
func TestPolledReplies(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rtt          func() time.Duration
		maxPerProbe  float64 // scheduler wake-ups per probe
		maxReadDelay time.Duration
	}{
		{"1ms path", func() time.Duration { return time.Millisecond }, 2.2, 5 * time.Millisecond},
		{"300ms ± 50ms path", uniformRTT(3, 300*time.Millisecond, 50*time.Millisecond), 6, 45 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeClock()
			n := newPollNet(c)
			n.rttFn = tc.rtt
			m := NewManager(Options{Clock: c, Profiles: Profiles{Jitter: -1}, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeICMP: n}})
			defer m.Close()
			start(t, m, pairA, "eth0", mobike.ProfileStandby) // one probe in flight at a time
			var evs []mobike.EvProbeResult
			for range 60 * 200 {
				c.Advance(5 * time.Millisecond)
				for _, ev := range drain(m) {
					if ev.OK {
						if d := c.Now().Sub(ev.At); d > tc.maxReadDelay {
							t.Fatalf("reply of %v read %v after it arrived", ev.RTT, d)
						}
					}
					evs = append(evs, ev)
				}
			}
			sent := len(n.sendTimes(pairA))
			lost := 0
			for _, ev := range evs {
				if !ev.OK {
					lost++
				}
			}
			w := float64(m.Stats().Wakeups) / float64(sent)
			t.Logf("%d probes, %d lost, %.2f wake-ups and %.2f polls per probe", sent, lost, w, float64(n.polls)/float64(sent))
			if lost > 1 || w > tc.maxPerProbe || sent < 55 {
				t.Fatalf("%d probes, %d lost, %.2f wake-ups per probe", sent, lost, w)
			}
		})
	}
	// a reply that arrived just before the deadline is read before the
	// timeout is judged
	c := newFakeClock()
	n := newPollNet(c)
	n.rtt = 999 * time.Millisecond // initial timeout 1s
	m := NewManager(Options{Clock: c, Profiles: Profiles{Jitter: -1}, Transports: map[mobike.ProbeMethod]Transport{mobike.ProbeICMP: n}})
	defer m.Close()
	start(t, m, pairA, "eth0", mobike.ProfileStandby)
	c.Advance(1100 * time.Millisecond)
	if evs := drain(m); len(evs) != 1 || !evs[0].OK || evs[0].RTT != 999*time.Millisecond {
		t.Fatalf("events %+v", evs)
	}
}

// TestBurstKeepsItsTimeout: a burst requested by the core (a traffic hint)
// on a silent pair while a regular probe is in flight: that probe times out
// in the middle of the burst and backs the pair's timeout off, but the
// burst's probes keep the timeout of the burst's start, so the burst
// resolves one base timeout after its last probe (not a backed-off one).
func TestBurstKeepsItsTimeout(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{})
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(1020 * time.Millisecond) // probes at 0, 200 … 1000 answered
	drain(m)
	n.set(func(n *fakeNet) { n.drop = func(mobike.Pair, uint32) bool { return true } })
	c.Advance(230 * time.Millisecond) // the probe of 1200 is in flight until 1300
	hint := c.Now()
	if err := m.Apply(mobike.ActProbeConfirm{Pair: pairA}); err != nil {
		t.Fatal(err)
	}
	base := DefaultProfiles().MinTimeout
	want := hint.Add(2*(base/3) + base) // the burst's last probe, at the base timeout
	var verdict time.Time
	for range 1000 {
		c.Advance(time.Millisecond)
		for _, ev := range drain(m) {
			if downVerdict(ev, 3) && verdict.IsZero() {
				verdict = ev.At
			}
		}
		if !verdict.IsZero() {
			break
		}
	}
	if verdict.IsZero() || verdict.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("down verdict %v after the hint, want %v", verdict.Sub(hint), want.Sub(hint))
	}
}

// TestRTTJumpShortIntervalNoFalseDown: probes every 10ms with a 25ms floor;
// the RTT jumps from 5ms to 80ms. The regular probes in flight lose fast
// (25ms, not yet backed off) and pile up a streak longer than the burst
// before the first late reply comes; those short losses must not stand in
// for the burst's evidence (PathStats.Confirming), so no down verdict.
func TestRTTJumpShortIntervalNoFalseDown(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{Active: 10 * time.Millisecond, MinTimeout: 25 * time.Millisecond})
	n.set(func(n *fakeNet) { n.rtt = 5 * time.Millisecond })
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	runFor(m, c, 2*time.Second, 10*time.Millisecond)
	n.set(func(n *fakeNet) { n.rtt = 80 * time.Millisecond })
	step := c.Now()
	losses := 0
	for _, ev := range runFor(m, c, 5*time.Second, time.Millisecond) {
		if !ev.OK {
			losses++
		}
		if downVerdict(ev, 3) {
			t.Fatalf("down verdict %v after the RTT jump: %+v", ev.At.Sub(step), ev.Stats)
		}
	}
	if losses < 4 {
		t.Fatalf("only %d losses after the jump: the case is not exercised", losses)
	}
}
