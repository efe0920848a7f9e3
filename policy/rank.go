package policy

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultRanker ranks candidates by, in order (design.md "Decisions"):
//
//  1. eligible (allowed for the connection, uplink not excluded, usable,
//     not a NATed pair when the connection forbids NAT)
//  2. uplink priority class (higher Priority wins)
//  3. local address not deprecated
//  4. SLA met (loss and RTT within the connection's SLA)
//  5. cost (lower wins), then unmetered before metered
//  6. the address family of the current pair, else IPv6 before IPv4 (v4↔v6
//     fallback: the other family is used only when this one does not work;
//     a working SA is never moved just to change family)
//  7. RTT class (RTTClass: coarse buckets, so jitter does not reorder pairs;
//     the current pair's RTT counts half, so that two pairs of the same RTT
//     straddling a bucket boundary do not swap places)
//  8. the current pair (never move between equals)
//  9. local, then remote address (a total order, for determinism)
type DefaultRanker struct{}

var _ Ranker = DefaultRanker{}

// rankKeys are the names of the keys in DefaultRanker's order, used in
// reasons.
const (
	keyEligible   = "eligible"
	keyPriority   = "priority"
	keyDeprecated = "deprecated"
	keySLA        = "sla"
	keyCost       = "cost"
	keyMetered    = "metered"
	keyFamily     = "family"
	keyRTT        = "rtt"
	keyCurrent    = "current"
	keyAddr       = "address"
)

// RTTClass buckets an RTT: 0 below 20 ms, then one class per quadrupling
// (20–80 ms = 1, 80–320 ms = 2, ...). Unknown (zero) RTT is class 0. The
// buckets are coarse on purpose: a path is left for a faster one only when it
// is several times faster, never for jitter or a slow first probe (measured
// in the lab: the first IPv6 probes after start take 1–10 ms, later 0.05 ms).
func RTTClass(rtt time.Duration) int {
	c := 0
	for t := 20 * time.Millisecond; rtt >= t && c < 30; t *= 4 {
		c++
	}
	return c
}

// rankRTT is the RTT a candidate is ranked with: the current pair's counts
// half (hysteresis), so that it is left for a faster pair only when that one
// is in a faster bucket than half its RTT (at least twice as fast) — never
// because jitter carried its RTT across a bucket boundary (a 300 ms ± 50 ms
// path straddles 320 ms).
func rankRTT(c *Ranked) time.Duration {
	if c.Current {
		return c.RTT / 2
	}
	return c.RTT
}

// Eligibility returns "" when the connection may be steered onto the
// candidate, else why not.
func Eligibility(conn ConnPolicy, c Candidate) string {
	switch {
	case c.Uplink.Exclude:
		return "uplink " + c.Uplink.Name + " excluded"
	case !conn.Allows(c.Uplink):
		return "uplink " + c.Uplink.Name + " not allowed for " + conn.Name
	case !c.Usable:
		st := c.State
		if st == "" {
			st = "untested"
		}
		return "not operational (" + st + ")"
	case c.NAT && conn.NAT == NATForbid:
		return "nat forbidden"
	}
	return ""
}

// SLAMet reports whether the candidate meets the SLA (zero fields are
// defaults); the current pair with the SLAHysteresis margin.
func SLAMet(sla SLA, c Candidate) bool {
	if c.Current {
		return c.Usable && sla.MetCurrent(c.Loss, c.RTT)
	}
	return c.Usable && sla.Met(c.Loss, c.RTT)
}

// Rank implements Ranker.
func (DefaultRanker) Rank(conn ConnPolicy, cands []Candidate) []Ranked {
	out := make([]Ranked, len(cands))
	for i, c := range cands {
		out[i] = Ranked{Candidate: c, SLAMet: SLAMet(conn.SLA, c)}
		if why := Eligibility(conn, c); why != "" {
			out[i].Reason = why
		} else {
			out[i].Eligible = true
		}
	}
	v6 := preferV6(cands)
	// Sort an index: the entries are large (a group evaluation ranks on
	// every probe result that changes a pair's inputs). compare is a total
	// order, so the result does not depend on the sort.
	idx := make([]int, 2*len(out))
	idx, cls := idx[:len(out)], idx[len(out):]
	for i := range idx {
		idx[i], cls[i] = i, RTTClass(rankRTT(&out[i]))
	}
	slices.SortFunc(idx, func(a, b int) int {
		r, _ := compareClasses(&out[a], &out[b], cls[a], cls[b], v6)
		return r
	})
	permute(out, idx)
	for i := range out {
		out[i].Rank = i + 1
		if !out[i].Eligible {
			continue
		}
		if i == 0 {
			out[i].Reason = "best: " + summary(&out[i])
			continue
		}
		_, key := compare(&out[i-1], &out[i], v6)
		out[i].Reason = "below #" + strconv.Itoa(i) + " on " + explainKey(key, &out[i-1], &out[i])
	}
	return out
}

// preferV6 is the preferred address family: the current pair's, else IPv6.
func preferV6(cands []Candidate) bool {
	for _, c := range cands {
		if c.Current {
			return c.Remote.Is6()
		}
		if c.CurrentIs4 {
			return false
		}
	}
	return true
}

// permute puts rs[idx[i]] at place i, in place (idx is consumed).
func permute(rs []Ranked, idx []int) {
	for i := range idx {
		if idx[i] < 0 {
			continue
		}
		tmp := rs[i]
		j := i
		for idx[j] != i {
			k := idx[j]
			rs[j] = rs[k]
			idx[j] = -1
			j = k
		}
		rs[j] = tmp
		idx[j] = -1
	}
}

// compare orders a before b (<0) when a ranks better, naming the deciding
// key.
func compare(a, b *Ranked, v6 bool) (int, string) {
	return compareClasses(a, b, RTTClass(rankRTT(a)), RTTClass(rankRTT(b)), v6)
}

// compareClasses is compare with the RTT classes of a and b given.
func compareClasses(a, b *Ranked, aRTT, bRTT int, v6 bool) (int, string) {
	if r := boolFirst(a.Eligible, b.Eligible); r != 0 {
		return r, keyEligible
	}
	if r := b.Uplink.Priority - a.Uplink.Priority; r != 0 {
		return sign(r), keyPriority
	}
	if r := boolFirst(!a.Deprecated, !b.Deprecated); r != 0 {
		return r, keyDeprecated
	}
	if r := boolFirst(a.SLAMet, b.SLAMet); r != 0 {
		return r, keySLA
	}
	if r := a.Uplink.Cost - b.Uplink.Cost; r != 0 {
		return sign(r), keyCost
	}
	if r := boolFirst(!a.Uplink.Metered, !b.Uplink.Metered); r != 0 {
		return r, keyMetered
	}
	if r := boolFirst(a.Remote.Is6() == v6, b.Remote.Is6() == v6); r != 0 {
		return r, keyFamily
	}
	if r := aRTT - bRTT; r != 0 {
		return sign(r), keyRTT
	}
	if r := boolFirst(a.Current, b.Current); r != 0 {
		return r, keyCurrent
	}
	if r := a.Local.Compare(b.Local); r != 0 {
		return r, keyAddr
	}
	return a.Remote.Compare(b.Remote), keyAddr
}

func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func summary(r *Ranked) string {
	var b strings.Builder
	b.Grow(96)
	b.WriteString("uplink " + r.Uplink.Name + " priority " + strconv.Itoa(r.Uplink.Priority))
	if r.SLAMet {
		b.WriteString(", sla met")
	} else {
		b.WriteString(", sla not met")
	}
	b.WriteString(", cost " + strconv.Itoa(r.Uplink.Cost))
	if r.Uplink.Metered {
		b.WriteString(", metered")
	}
	b.WriteString(", loss " + percent(r.Loss) + ", rtt " + r.RTT.String())
	return b.String()
}

// percent renders a ratio as fmt's "%.1f%%" of 100*ratio.
func percent(ratio float64) string { return strconv.FormatFloat(100*ratio, 'f', 1, 64) + "%" }

func explainKey(key string, prev, r *Ranked) string {
	switch key {
	case keyPriority:
		return "priority " + strconv.Itoa(r.Uplink.Priority) + " vs " + strconv.Itoa(prev.Uplink.Priority)
	case keyDeprecated:
		return "deprecated local address"
	case keySLA:
		return "sla not met (loss " + percent(r.Loss) + ", rtt " + r.RTT.String() + ")"
	case keyCost:
		return "cost " + strconv.Itoa(r.Uplink.Cost) + " vs " + strconv.Itoa(prev.Uplink.Cost)
	case keyMetered:
		return "metered uplink"
	case keyFamily:
		return "ipv4 after ipv6"
	case keyRTT:
		return "rtt " + r.RTT.String() + " vs " + prev.RTT.String()
	case keyCurrent:
		return "not the current pair"
	}
	return "address order"
}
