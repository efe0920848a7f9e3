package probe

import (
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

const ms = time.Millisecond

func TestLossWindow(t *testing.T) {
	type step struct {
		lost      bool
		wantRatio float64
		wantCons  int
	}
	tests := []struct {
		name   string
		window int
		steps  []step
	}{
		{"empty window then one loss", 4, []step{{true, 1, 1}}},
		{"mixed", 4, []step{{false, 0, 0}, {true, 0.5, 1}, {true, 2.0 / 3, 2}, {false, 0.5, 0}}},
		{"old losses slide out", 3, []step{{true, 1, 1}, {true, 1, 2}, {false, 2.0 / 3, 0}, {false, 1.0 / 3, 0}, {false, 0, 0}}},
		{"losses replace replies", 2, []step{{false, 0, 0}, {false, 0, 0}, {true, 0.5, 1}, {true, 1, 2}, {true, 1, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newPathStats(tc.window, 10)
			for i, st := range tc.steps {
				if st.lost {
					s.onLoss()
				} else {
					s.onReply(10*ms, time.Unix(int64(i), 0))
				}
				ps := s.snapshot()
				if ps.LossRatio != st.wantRatio || ps.ConsecLost != st.wantCons {
					t.Fatalf("step %d: loss %v consec %d, want %v %d", i, ps.LossRatio, ps.ConsecLost, st.wantRatio, st.wantCons)
				}
			}
		})
	}
}

func TestSRTT(t *testing.T) {
	// RFC 6298: first sample R: SRTT=R, RTTVAR=R/2; then α=1/8, β=1/4
	// (the warm-up's samples here are not smaller: no re-seed).
	s := newPathStats(10, 10)
	s.onReply(100*ms, time.Time{})
	if s.srtt != 100*ms || s.rttvar != 50*ms {
		t.Fatalf("first: srtt %v rttvar %v", s.srtt, s.rttvar)
	}
	s.onReply(100*ms, time.Time{})
	s.onReply(100*ms, time.Time{})
	// RTTVAR = 3/4·(3/4·50) + 0 = 28.125; SRTT = 100
	if s.srtt != 100*ms || s.rttvar != 28125*time.Microsecond {
		t.Fatalf("third: srtt %v rttvar %v", s.srtt, s.rttvar)
	}
	s.onReply(20*ms, time.Time{})
	// RTTVAR = 3/4·28.125 + 1/4·|100−20| = 21.09375+20 = 41.09375; SRTT = 7/8·100 + 1/8·20 = 90
	if s.srtt != 90*ms || s.rttvar != 41093750*time.Nanosecond {
		t.Fatalf("fourth: srtt %v rttvar %v", s.srtt, s.rttvar)
	}
	// jitter J = 0 + (|20−100| − 0)/16 = 5 ms
	if s.jitter != 5*ms {
		t.Fatalf("jitter %v", s.jitter)
	}
	s.onReply(20*ms, time.Time{})
	// SRTT = 7/8·90 + 1/8·20 = 81.25; J = 5 + (0−5)/16 = 4.6875
	if s.srtt != 81250*time.Microsecond || s.jitter != 4687500*time.Nanosecond {
		t.Fatalf("fifth: srtt %v jitter %v", s.srtt, s.jitter)
	}
}

// During the first samples of a path, and the first after an outage, a
// sample under half of SRTT seeds the estimator again: the first exchanges
// may pay neighbour discovery (the lab's first IPv6 reply took 348 ms, the
// next 0.3 ms; packets held meanwhile come back late together). Jitter is
// left alone; later samples follow RFC 6298.
func TestSRTTReseededDuringWarmUp(t *testing.T) {
	s := newPathStats(10, 10)
	s.onReply(348*ms, time.Time{})
	s.onReply(148*ms, time.Time{})
	s.onReply(300*time.Microsecond, time.Time{})
	if s.srtt != 300*time.Microsecond || s.rttvar != 150*time.Microsecond || s.jitter != 0 {
		t.Fatalf("third: srtt %v rttvar %v jitter %v, want 300µs 150µs 0", s.srtt, s.rttvar, s.jitter)
	}
	s.onReply(100*ms, time.Time{})
	// SRTT = 7/8·0.3 + 1/8·100 = 12.7625 ms: past the warm-up an outlier is averaged in
	if want := 12762500 * time.Nanosecond; s.srtt != want {
		t.Fatalf("fourth: srtt %v, want %v", s.srtt, want)
	}
	s.onReply(300*time.Microsecond, time.Time{})
	if s.srtt == 300*time.Microsecond {
		t.Fatal("re-seeded after the warm-up")
	}
	// An outage re-opens the warm-up: the first reply after it is late
	// (averaged in), the next, smaller, seeds again.
	for range outageStreak {
		s.onLoss()
	}
	before := s.srtt
	s.onReply(50*ms, time.Time{})
	if s.srtt <= before {
		t.Fatalf("after the outage: srtt %v, want above %v (the late reply averaged in)", s.srtt, before)
	}
	s.onReply(400*time.Microsecond, time.Time{})
	if s.srtt != 400*time.Microsecond {
		t.Fatalf("after the outage: srtt %v, want re-seeded to 400µs", s.srtt)
	}
	// A jittery path is not seeded with its lowest early sample.
	j := newPathStats(10, 10)
	j.onReply(340*ms, time.Time{})
	j.onReply(260*ms, time.Time{})
	if j.srtt != 330*ms {
		t.Fatalf("jittery: srtt %v, want 330ms (averaged, not re-seeded)", j.srtt)
	}
}

func TestPercentiles(t *testing.T) {
	tests := []struct {
		name     string
		window   int
		samples  []time.Duration
		p50, p95 time.Duration
	}{
		{"none", 10, nil, 0, 0},
		{"one", 10, []time.Duration{7 * ms}, 7 * ms, 7 * ms},
		{"four", 10, []time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms}, 2 * ms, 4 * ms},
		{"window keeps the last", 3, []time.Duration{100 * ms, 100 * ms, 1 * ms, 2 * ms, 3 * ms}, 2 * ms, 3 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newPathStats(10, tc.window)
			for _, r := range tc.samples {
				s.onReply(r, time.Time{})
			}
			ps := s.snapshot()
			if ps.RTTP50 != tc.p50 || ps.RTTP95 != tc.p95 {
				t.Fatalf("p50 %v p95 %v, want %v %v", ps.RTTP50, ps.RTTP95, tc.p50, tc.p95)
			}
		})
	}
	// 1..100 ms: nearest rank p50 = 50, p95 = 95
	s := newPathStats(100, 100)
	for i := 100; i >= 1; i-- {
		s.onReply(time.Duration(i)*ms, time.Time{})
	}
	if ps := s.snapshot(); ps.RTTP50 != 50*ms || ps.RTTP95 != 95*ms {
		t.Fatalf("1..100: p50 %v p95 %v", ps.RTTP50, ps.RTTP95)
	}
}

func TestStatsCounters(t *testing.T) {
	s := newPathStats(10, 10)
	s.onSent(72)
	s.onSent(72)
	s.onReply(time.Millisecond, time.Unix(5, 0))
	s.onLoss()
	s.nat = mobike.NATPresent
	ps := s.snapshot()
	if ps.Sent != 2 || ps.Received != 1 || ps.BytesSent != 144 || !ps.LastReply.Equal(time.Unix(5, 0)) || ps.NAT != mobike.NATPresent {
		t.Fatalf("snapshot %+v", ps)
	}
}

// TestLateReplyInWindow: a late reply turns its probe's loss back into a
// delivery (while it is still in the window), ends the streak, and does not
// restart the window the way the end of an outage does — the streak's other
// losses were most likely late too (an RTT step), and restarting would leave
// a tiny window that the next timeouts would fill with "50 % loss".
func TestLateReplyInWindow(t *testing.T) {
	s := newPathStats(100, 10)
	for i := range 15 {
		s.onReply(ms, time.Unix(int64(i), 0))
	}
	var marks []lossMark
	for range 4 {
		marks = append(marks, s.onLoss())
	}
	s.onLateReply(300*ms, time.Unix(20, 0), marks[0])
	ps := s.snapshot()
	if ps.ConsecLost != 0 || ps.LossRatio != 3.0/19 || ps.Received != 16 {
		t.Fatalf("after a late reply: %+v, want 3 losses of 19 and the streak ended", ps)
	}
	s.onLoss()
	s.onLoss()
	if ps := s.snapshot(); ps.LossRatio >= 0.5 {
		t.Fatalf("two more timeouts: loss ratio %v", ps.LossRatio)
	}
	for _, m := range marks[1:] {
		s.onLateReply(300*ms, time.Unix(21, 0), m)
	}
	if ps := s.snapshot(); ps.LossRatio != 2.0/21 {
		t.Fatalf("after the other late replies: loss ratio %v, want 2/21", ps.LossRatio)
	}
	// a mark from before a window restart (an outage's end) is ignored
	old := s.onLoss()
	s.onLoss()
	s.onLoss()
	s.onReply(ms, time.Unix(30, 0)) // outage over: window restarts
	s.onLoss()
	s.onLateReply(300*ms, time.Unix(31, 0), old)
	if ps := s.snapshot(); ps.LossRatio != 0.5 {
		t.Fatalf("stale mark changed the new window: loss ratio %v", ps.LossRatio)
	}
}
