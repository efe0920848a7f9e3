package probe

import (
	"net/netip"
	"testing"
	"time"
)

func TestSourceLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name string
		run  func(l *sourceLimiter) int
		want int
	}{
		{"burst then nothing", func(l *sourceLimiter) int {
			n := 0
			for range 100 {
				if l.allow(a, t0) {
					n++
				}
			}
			return n
		}, 5},
		{"refill at rate", func(l *sourceLimiter) int {
			n := 0
			for i := range 10000 { // 10 000 requests over 1 s
				if l.allow(a, t0.Add(time.Duration(i)*100*time.Microsecond)) {
					n++
				}
			}
			return n
		}, 5 + 10 - 1},
		{"sources are independent", func(l *sourceLimiter) int {
			n := 0
			for range 10 {
				if l.allow(a, t0) {
					n++
				}
				if l.allow(b, t0) {
					n++
				}
			}
			return n
		}, 10},
		{"ipv6 grouped by /64", func(l *sourceLimiter) int {
			n := 0
			for i := range 10 {
				if l.allow(netip.AddrFrom16([16]byte{0x20, 0x01, 0xd, 0xb8, 15: byte(i)}), t0) {
					n++
				}
			}
			return n
		}, 5},
		{"table cap refuses new active sources", func(l *sourceLimiter) int {
			l.max = 1
			l.allow(a, t0)
			n := 0
			if l.allow(b, t0) {
				n++
			}
			if l.allow(b, t0.Add(time.Hour)) { // a idle → evicted
				n++
			}
			return n
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.run(newSourceLimiter(10, 5, 100)); got != tc.want {
				t.Fatalf("allowed %d, want %d", got, tc.want)
			}
		})
	}
}
