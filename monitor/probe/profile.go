package probe

import (
	"math/rand/v2"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/policy"
)

// Profiles tunes probe pacing and timeouts. Zero fields take the default
// written on them.
type Profiles struct {
	// Active is the probe interval on a pair an SA is on. Default 200ms.
	Active time.Duration
	// Standby is the interval on a candidate pair. Default 1s.
	Standby time.Duration
	// MeteredStandby is the interval on a candidate pair over a metered
	// uplink. Default 10s.
	MeteredStandby time.Duration
	// Jitter spreads each interval uniformly by ±Jitter×interval so that
	// probers do not synchronise. Default 0.1; negative disables it.
	Jitter float64

	// Timeout, when positive, is a fixed probe timeout for every pair (the
	// config's probes.timeout override). Zero (the default) selects the
	// adaptive timeout: per pair, the RFC 6298 retransmission timeout
	// RTO = SRTT + max(G, 4×RTTVAR) with G = 1ms, clamped to
	// [MinTimeout, MaxTimeout], InitialTimeout before the first RTT sample,
	// and doubled per timeout of a loss streak (RFC 6298 (5.5)) until the
	// next reply; the probes of a confirmation burst keep the timeout the
	// pair had when the burst started.
	Timeout time.Duration
	// MinTimeout is the floor of the adaptive timeout. Default
	// policy.DefaultProbeMinTimeout (100ms).
	MinTimeout time.Duration
	// MaxTimeout is its ceiling. Default policy.DefaultProbeMaxTimeout (2s).
	MaxTimeout time.Duration
	// InitialTimeout is the adaptive timeout before a pair's first reply.
	// Default 1s (RFC 6298 (2.1)).
	InitialTimeout time.Duration

	// DownAfter is the core's K: the consecutive losses that make it declare
	// a pair down (policy.PathPolicy.DownAfter; the daemon copies the
	// config's probes.loss_threshold). The manager sizes confirmation bursts
	// with it. Default policy.DefaultDownAfter.
	DownAfter int
	// Burst is the number of confirmation probes sent after the first loss
	// of a streak, BurstGap apart, the first at once. While they are in
	// flight a result carries PathStats.Confirming, and the core waits for
	// the burst's evidence before it declares the pair down — unless the
	// streak already holds more than Burst losses (counted in deadline
	// order, regular and burst probes alike): that is as many consecutive
	// losses as a lost burst after the first miss gives, so the rest of the
	// burst could only add to it. Default DownAfter (a silent pair then
	// shows ≥ DownAfter+1 consecutive losses within ≈ one backed-off
	// timeout plus two gaps of the first miss); negative disables bursts.
	Burst int
	// BurstGap separates the confirmation probes. Default 0: a third of
	// the pair's timeout.
	BurstGap time.Duration

	// BackoffAfter is the number of consecutive losses after which the
	// interval doubles per further loss (a dead pair). Default 3.
	BackoffAfter int
	// BackoffMax caps the backed-off interval. Default 30s.
	BackoffMax time.Duration
	// LossWindow is the number of recent probes the loss ratio is computed
	// over. Default 100.
	LossWindow int
	// RTTWindow is the number of recent RTT samples behind the percentiles.
	// Default 100.
	RTTWindow int
	// LocationEvery makes every n-th STAMP probe carry a Location TLV (NAT
	// detection); the first probe of a session always does. Default 10.
	LocationEvery int
}

// DefaultProfiles returns the defaults documented on Profiles.
func DefaultProfiles() Profiles { return Profiles{}.withDefaults() }

func (p Profiles) withDefaults() Profiles {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&p.Active, 200*time.Millisecond)
	def(&p.Standby, time.Second)
	def(&p.MeteredStandby, 10*time.Second)
	p.Timeout = max(p.Timeout, 0)
	def(&p.MinTimeout, policy.DefaultProbeMinTimeout)
	def(&p.MaxTimeout, policy.DefaultProbeMaxTimeout)
	def(&p.InitialTimeout, time.Second)
	p.MaxTimeout = max(p.MaxTimeout, p.MinTimeout)
	p.InitialTimeout = min(max(p.InitialTimeout, p.MinTimeout), p.MaxTimeout)
	p.BurstGap = max(p.BurstGap, 0)
	def(&p.BackoffMax, 30*time.Second)
	if p.Jitter == 0 {
		p.Jitter = 0.1
	}
	p.Jitter = max(p.Jitter, 0)
	if p.DownAfter <= 0 {
		p.DownAfter = policy.DefaultDownAfter
	}
	defInt(&p.Burst, p.DownAfter)
	p.Burst = max(p.Burst, 0)
	defInt(&p.BackoffAfter, 3)
	defInt(&p.LossWindow, 100)
	defInt(&p.RTTWindow, 100)
	defInt(&p.LocationEvery, 10)
	return p
}

// Interval is the base probe interval of profile pr.
func (p Profiles) Interval(pr mobike.ProbeProfile) time.Duration {
	switch pr {
	case mobike.ProfileStandby:
		return p.Standby
	case mobike.ProfileMeteredStandby:
		return p.MeteredStandby
	}
	return p.Active
}

// pacedInterval is the delay before the next regular probe: the profile's
// interval, doubled per consecutive loss beyond BackoffAfter up to
// BackoffMax (never below the base). The scheduler jitters it (or joins a
// round within the jitter window).
func (p Profiles) pacedInterval(pr mobike.ProbeProfile, consec int) time.Duration {
	d := p.Interval(pr)
	if p.BackoffAfter > 0 && consec >= p.BackoffAfter {
		for i := 0; i <= consec-p.BackoffAfter && d < p.BackoffMax; i++ {
			d *= 2
		}
		d = max(min(d, p.BackoffMax), p.Interval(pr))
	}
	return d
}

func jitter(d time.Duration, j float64, rnd *rand.Rand) time.Duration {
	if j <= 0 || d <= 0 {
		return d
	}
	f := 1 + j*(2*rnd.Float64()-1)
	return time.Duration(float64(d) * f)
}

// rtoGranularity is G of RFC 6298 (2.2)/(2.3): the least margin over SRTT.
const rtoGranularity = time.Millisecond

// baseTimeout is the probe timeout of a pair with RTT estimate (srtt,
// rttvar; have = at least one sample) before any backoff: the fixed
// Timeout when set, else the RFC 6298 RTO clamped to [MinTimeout,
// MaxTimeout].
func (p Profiles) baseTimeout(srtt, rttvar time.Duration, have bool) time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	if !have {
		return p.InitialTimeout
	}
	rto := srtt + max(rtoGranularity, 4*rttvar)
	return min(max(rto, p.MinTimeout), p.MaxTimeout)
}

// timeout is baseTimeout doubled backoff times (RFC 6298 (5.5)), capped at
// MaxTimeout; a fixed Timeout never backs off.
func (p Profiles) timeout(srtt, rttvar time.Duration, have bool, backoff int) time.Duration {
	t := p.baseTimeout(srtt, rttvar, have)
	if p.Timeout > 0 {
		return t
	}
	for i := 0; i < backoff && t < p.MaxTimeout; i++ {
		t *= 2
	}
	return min(t, p.MaxTimeout)
}

// burstGap is the spacing of confirmation probes on a pair whose base
// timeout is base.
func (p Profiles) burstGap(base time.Duration) time.Duration {
	if p.BurstGap > 0 {
		return p.BurstGap
	}
	return base / 3
}
