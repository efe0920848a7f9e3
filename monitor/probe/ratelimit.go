package probe

import (
	"net/netip"
	"time"
)

// sourceLimiter is a per-source token bucket (IPv6 sources are grouped by
// /64) with a capped table. Not safe for concurrent use.
type sourceLimiter struct {
	rate    float64 // tokens per second
	burst   float64
	max     int
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate float64, burst, max int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: float64(burst), max: max, buckets: map[netip.Prefix]*bucket{}}
}

func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, 32)
}

// allow takes one token from src's bucket at now.
func (l *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	k := sourceKey(src)
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
			if len(l.buckets) >= l.max {
				return false // table full of active sources: refuse new ones
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict forgets sources whose bucket has refilled (idle ones).
func (l *sourceLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
