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
	// pushes counts outcomes since the window was last cleared (epoch), so
	// that a late reply can find its probe's loss again (lossMark).
	pushes uint64
	epoch  uint64

	// rtts is a ring of the last len(rtts) RTT samples; sorted holds the
	// same samples in order (kept incrementally: a result must not cost a
	// sort).
	rtts          []time.Duration
	rttNext, rttN int
	sorted        []time.Duration

	srtt, rttvar time.Duration // RFC 6298 §2
	haveRTT      bool
	warm         int           // samples left in which a smaller one re-seeds (see sample)
	jitter       time.Duration // RFC 3550 §6.4.1 style, over consecutive RTTs
	lastRTT      time.Duration

	consec    int
	lastReply time.Time
	nat       mobike.NATVerdict
}

// warmSamples is how many samples after the first, and after an outage,
// may re-seed the RTT estimator (see sample).
const warmSamples = 2

// outageStreak consecutive losses make an outage: the first reply after one
// restarts the loss window.
const outageStreak = 3

func newPathStats(lossWindow, rttWindow int) *pathStats {
	rttWindow = max(rttWindow, 1)
	return &pathStats{outcomes: make([]bool, max(lossWindow, 1)), rtts: make([]time.Duration, rttWindow),
		sorted: make([]time.Duration, 0, rttWindow)}
}

func (s *pathStats) onSent(bytes int) {
	s.sent++
	s.bytes += uint64(bytes)
}

// lossMark locates a loss in the window: its push number in an epoch.
type lossMark struct{ epoch, push uint64 }

func (s *pathStats) push(lost bool) {
	s.pushes++
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
	s.endStreak(true)
	s.push(false)
	s.sample(rtt, at)
}

// onLateReply records a reply that arrived after its probe had timed out
// and been counted lost (at mark). The path delivered, only slower than the
// timeout: the loss turns back into a delivery in the window (if it is still
// there), the loss streak ends, and the RTT is a valid sample (each probe
// carries its own nonce, so Karn's ambiguity does not arise), which lets the
// timeout grow to a path that just became slower. The window is not
// restarted as after an outage: the streak's other losses were most likely
// late too, and their own late replies turn them back.
func (s *pathStats) onLateReply(rtt time.Duration, at time.Time, mark lossMark) {
	if mark.epoch == s.epoch && mark.push > 0 && s.pushes-mark.push < uint64(s.n) {
		i := int((mark.push - 1) % uint64(len(s.outcomes)))
		if s.outcomes[i] {
			s.outcomes[i] = false
			s.lost--
		}
	}
	s.endStreak(false)
	s.sample(rtt, at)
}

// endStreak counts a reply and ends the loss streak; after an outage
// (restart) the window restarts too.
func (s *pathStats) endStreak(restart bool) {
	s.received++
	if restart && s.consec >= outageStreak {
		// An outage just ended: its losses are history, not ongoing loss.
		// Keeping them in the window would hold a recovered pair "lossy"
		// for a whole window (100 probes = 100 s on a standby pair).
		s.next, s.n, s.lost, s.pushes = 0, 0, 0, 0
		s.epoch++
		s.warm = warmSamples
	}
	s.consec = 0
}

func (s *pathStats) sample(rtt time.Duration, at time.Time) {
	if at.After(s.lastReply) {
		s.lastReply = at
	}
	if s.rttN == len(s.rtts) {
		old := s.rtts[s.rttNext]
		if i, ok := slices.BinarySearch(s.sorted, old); ok {
			s.sorted = slices.Delete(s.sorted, i, i+1)
		}
	}
	i, _ := slices.BinarySearch(s.sorted, rtt)
	s.sorted = slices.Insert(s.sorted, i, rtt)
	s.rtts[s.rttNext] = rtt
	s.rttNext = (s.rttNext + 1) % len(s.rtts)
	s.rttN = min(s.rttN+1, len(s.rtts))
	if !s.haveRTT {
		// RFC 6298 (2.2): SRTT = R, RTTVAR = R/2
		s.srtt, s.rttvar, s.haveRTT = rtt, rtt/2, true
		s.lastRTT, s.warm = rtt, warmSamples
		return
	}
	if s.warm > 0 {
		// The first exchanges on a new path, or after an outage, may pay
		// what later ones do not (neighbour discovery: 348 ms for the first
		// IPv6 reply in the lab against 0.3 ms after, and the packets the
		// kernel held meanwhile come back together, also late; a start
		// under load). A sample under half of SRTT then seeds the
		// estimator again, instead of an outlier decaying by 1/8 a probe
		// (a standby pair's SRTT stayed ~20 times too high for ~10 s, IPv6
		// pairs were held degraded for an SLA breach). Only under half: a
		// jittery path (300 ± 50 ms) must not be seeded with its lowest
		// early sample. Jitter is left alone.
		s.warm--
		if 2*rtt < s.srtt {
			s.srtt, s.rttvar, s.lastRTT = rtt, rtt/2, rtt
			return
		}
	}
	// RFC 6298 (2.3): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R'|, SRTT = 7/8 SRTT + 1/8 R'
	s.rttvar = (3*s.rttvar + abs(s.srtt-rtt)) / 4
	s.srtt = (7*s.srtt + rtt) / 8
	// RFC 3550 §6.4.1: J += (|D| − J)/16
	s.jitter += (abs(rtt-s.lastRTT) - s.jitter) / 16
	s.lastRTT = rtt
}

// onLoss records a probe that timed out; the mark finds it again.
func (s *pathStats) onLoss() lossMark {
	s.push(true)
	s.consec++
	return lossMark{epoch: s.epoch, push: s.pushes}
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
	ps.RTTP50, ps.RTTP95 = percentile(s.sorted, 50), percentile(s.sorted, 95)
	return ps
}
