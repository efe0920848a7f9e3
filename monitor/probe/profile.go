package probe

import (
	"math/rand/v2"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Profiles tunes probe pacing. Zero fields take the default written on them.
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
	// Timeout is the floor of the probe timeout; the timeout is
	// max(Timeout, 3×SRTT), capped at MaxTimeout. Default 250ms.
	Timeout time.Duration
	// MaxTimeout caps the adaptive timeout. Default 2s.
	MaxTimeout time.Duration
	// Burst is the number of extra confirmation probes sent right after the
	// first loss of a streak, BurstGap apart, so that a dead pair shows K
	// consecutive losses after ≈ K×Timeout instead of K×interval.
	// Default 2; negative disables the burst.
	Burst int
	// BurstGap separates the confirmation probes. Default 20ms.
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
	def(&p.Timeout, 250*time.Millisecond)
	def(&p.MaxTimeout, 2*time.Second)
	def(&p.BurstGap, 20*time.Millisecond)
	def(&p.BackoffMax, 30*time.Second)
	if p.Jitter == 0 {
		p.Jitter = 0.1
	}
	p.Jitter = max(p.Jitter, 0)
	defInt(&p.Burst, 2)
	p.Burst = max(p.Burst, 0)
	defInt(&p.BackoffAfter, 3)
	defInt(&p.LossWindow, 100)
	defInt(&p.RTTWindow, 100)
	defInt(&p.LocationEvery, 10)
	p.MaxTimeout = max(p.MaxTimeout, p.Timeout)
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

// nextInterval is the delay before the next regular probe: the profile's
// interval, doubled per consecutive loss beyond BackoffAfter up to
// BackoffMax (never below the base), then jittered.
func (p Profiles) nextInterval(pr mobike.ProbeProfile, consec int, rnd *rand.Rand) time.Duration {
	d := p.Interval(pr)
	if p.BackoffAfter > 0 && consec >= p.BackoffAfter {
		for i := 0; i <= consec-p.BackoffAfter && d < p.BackoffMax; i++ {
			d *= 2
		}
		d = max(min(d, p.BackoffMax), p.Interval(pr))
	}
	return jitter(d, p.Jitter, rnd)
}

func jitter(d time.Duration, j float64, rnd *rand.Rand) time.Duration {
	if j <= 0 || d <= 0 {
		return d
	}
	f := 1 + j*(2*rnd.Float64()-1)
	return time.Duration(float64(d) * f)
}

// timeout is max(Timeout, 3×SRTT) capped at MaxTimeout.
func (p Profiles) timeout(srtt time.Duration) time.Duration {
	return min(max(p.Timeout, 3*srtt), p.MaxTimeout)
}
