package probe

import (
	"slices"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// pathStats accumulates the statistics of one pair. It is not safe for
// concurrent use; the Manager's lock guards it.
type pathStats struct {
	sent, received uint64
	bytes          uint64

	// outcomes is a ring of the last len(outcomes) resolved probes (true =
	// lost); n counts valid entries, lost the true ones among them.
	outcomes []bool
	next, n  int
	lost     int

	// rtts is a ring of the last len(rtts) RTT samples.
	rtts          []time.Duration
	rttNext, rttN int

	srtt, rttvar time.Duration // RFC 6298 §2
	haveRTT      bool
	jitter       time.Duration // RFC 3550 §6.4.1 style, over consecutive RTTs
	lastRTT      time.Duration

	consec    int
	lastReply time.Time
	nat       mobike.NATVerdict
}

// outageStreak consecutive losses make an outage: the first reply after one
// restarts the loss window.
const outageStreak = 3

func newPathStats(lossWindow, rttWindow int) *pathStats {
	return &pathStats{outcomes: make([]bool, max(lossWindow, 1)), rtts: make([]time.Duration, max(rttWindow, 1))}
}

func (s *pathStats) onSent(bytes int) {
	s.sent++
	s.bytes += uint64(bytes)
}

func (s *pathStats) push(lost bool) {
	if s.n == len(s.outcomes) {
		if s.outcomes[s.next] {
			s.lost--
		}
	} else {
		s.n++
	}
	s.outcomes[s.next] = lost
	if lost {
		s.lost++
	}
	s.next = (s.next + 1) % len(s.outcomes)
}

// onReply records a matched reply with round-trip time rtt arriving at at.
func (s *pathStats) onReply(rtt time.Duration, at time.Time) {
	s.received++
	if s.consec >= outageStreak {
		// An outage just ended: its losses are history, not ongoing loss.
		// Keeping them in the window would hold a recovered pair "lossy"
		// for a whole window (100 probes = 100 s on a standby pair).
		s.next, s.n, s.lost = 0, 0, 0
	}
	s.push(false)
	s.consec = 0
	s.lastReply = at
	s.rtts[s.rttNext] = rtt
	s.rttNext = (s.rttNext + 1) % len(s.rtts)
	s.rttN = min(s.rttN+1, len(s.rtts))
	if !s.haveRTT {
		// RFC 6298 (2.2): SRTT = R, RTTVAR = R/2
		s.srtt, s.rttvar, s.haveRTT = rtt, rtt/2, true
		s.lastRTT = rtt
		return
	}
	// RFC 6298 (2.3): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R'|, SRTT = 7/8 SRTT + 1/8 R'
	s.rttvar = (3*s.rttvar + abs(s.srtt-rtt)) / 4
	s.srtt = (7*s.srtt + rtt) / 8
	// RFC 3550 §6.4.1: J += (|D| − J)/16
	s.jitter += (abs(rtt-s.lastRTT) - s.jitter) / 16
	s.lastRTT = rtt
}

// onLoss records a probe that timed out.
func (s *pathStats) onLoss() {
	s.push(true)
	s.consec++
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// percentile is the nearest-rank percentile q (0 < q ≤ 100) of sorted.
func percentile(sorted []time.Duration, q int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (q*len(sorted) + 99) / 100 // ceil(q/100 × n)
	return sorted[max(rank, 1)-1]
}

func (s *pathStats) snapshot() mobike.PathStats {
	ps := mobike.PathStats{
		Sent: s.sent, Received: s.received,
		SRTT: s.srtt, Jitter: s.jitter,
		ConsecLost: s.consec, LastReply: s.lastReply,
		NAT: s.nat, BytesSent: s.bytes,
	}
	if s.n > 0 {
		ps.LossRatio = float64(s.lost) / float64(s.n)
	}
	if s.rttN > 0 {
		sorted := slices.Clone(s.rtts[:s.rttN])
		if s.rttN == len(s.rtts) {
			sorted = slices.Clone(s.rtts)
		}
		slices.Sort(sorted)
		ps.RTTP50, ps.RTTP95 = percentile(sorted, 50), percentile(sorted, 95)
	}
	return ps
}
