package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func cand(local, remote, uplink string, prio int, usable bool) Candidate {
	return Candidate{
		Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote),
		Uplink: UplinkPolicy{Name: uplink, Priority: prio}, Usable: usable, State: "operational",
	}
}

func order(rs []Ranked) string {
	var b []string
	for _, r := range rs {
		b = append(b, r.Uplink.Name+":"+r.Local.String()+">"+r.Remote.String())
	}
	return strings.Join(b, " ")
}

func TestRankTable(t *testing.T) {
	conn := ConnPolicy{Name: "office"}.WithDefaults()
	eth := cand("10.1.0.2", "10.3.0.2", "eth0", PriorityEthernet, true)
	wlan := cand("10.2.0.2", "10.3.0.2", "wlan0", PriorityWLAN, true)
	wwan := cand("10.5.0.2", "10.3.0.2", "wwan0", PriorityWWAN, true)
	wwan.Uplink.Metered = true
	tests := []struct {
		name  string
		conn  ConnPolicy
		cands []Candidate
		want  string
		elig  []bool
	}{
		{"priority", conn, []Candidate{wwan, wlan, eth}, "eth0:10.1.0.2>10.3.0.2 wlan0:10.2.0.2>10.3.0.2 wwan0:10.5.0.2>10.3.0.2", []bool{true, true, true}},
		{"unusable last", conn, []Candidate{func() Candidate { c := eth; c.Usable = false; c.State = "testing"; return c }(), wlan},
			"wlan0:10.2.0.2>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, false}},
		{"not allowed", ConnPolicy{Name: "x", AllowedUplinks: []string{"wlan"}}.WithDefaults(), []Candidate{eth, func() Candidate { c := wlan; c.Uplink.Kind = KindWLAN; return c }()},
			"wlan0:10.2.0.2>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, false}},
		{"nat forbidden", ConnPolicy{Name: "x", NAT: NATForbid}.WithDefaults(), []Candidate{func() Candidate { c := eth; c.NAT = true; return c }(), wlan},
			"wlan0:10.2.0.2>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, false}},
		{"nat allowed", conn, []Candidate{func() Candidate { c := eth; c.NAT = true; return c }(), wlan},
			"eth0:10.1.0.2>10.3.0.2 wlan0:10.2.0.2>10.3.0.2", []bool{true, true}},
		{"sla within class", conn, []Candidate{
			func() Candidate { c := eth; c.Loss = 0.3; return c }(),
			func() Candidate {
				c := eth
				c.Local = netip.MustParseAddr("10.9.0.2")
				c.Uplink.Name = "eth1"
				return c
			}()},
			"eth1:10.9.0.2>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, true}},
		{"cost then metered", conn, []Candidate{
			func() Candidate { c := wlan; c.Uplink.Cost = 5; return c }(),
			func() Candidate {
				c := wlan
				c.Local = netip.MustParseAddr("10.8.0.2")
				c.Uplink.Name = "m"
				c.Uplink.Metered = true
				return c
			}(),
			func() Candidate { c := wlan; c.Local = netip.MustParseAddr("10.7.0.2"); c.Uplink.Name = "n"; return c }()},
			"n:10.7.0.2>10.3.0.2 m:10.8.0.2>10.3.0.2 wlan0:10.2.0.2>10.3.0.2", []bool{true, true, true}},
		{"ipv6 first", conn, []Candidate{eth, cand("2001:db8::2", "2001:db8:3::2", "eth0", PriorityEthernet, true)},
			"eth0:2001:db8::2>2001:db8:3::2 eth0:10.1.0.2>10.3.0.2", []bool{true, true}},
		{"current family kept when the current pair is gone", conn, []Candidate{
			func() Candidate {
				c := cand("2001:db8::2", "2001:db8:3::2", "eth0", PriorityEthernet, true)
				c.CurrentIs4 = true
				return c
			}(),
			func() Candidate { c := eth; c.CurrentIs4 = true; return c }()},
			"eth0:10.1.0.2>10.3.0.2 eth0:2001:db8::2>2001:db8:3::2", []bool{true, true}},
		{"current wins ties", conn, []Candidate{eth, func() Candidate { c := eth; c.Remote = netip.MustParseAddr("10.4.0.2"); c.Current = true; return c }()},
			"eth0:10.1.0.2>10.4.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, true}},
		{"deprecated after fresh", conn, []Candidate{func() Candidate { c := eth; c.Deprecated = true; c.Current = true; return c }(),
			func() Candidate { c := eth; c.Local = netip.MustParseAddr("10.1.0.3"); return c }()},
			"eth0:10.1.0.3>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, true}},
		{"excluded", conn, []Candidate{func() Candidate { c := eth; c.Uplink.Exclude = true; return c }(), wwan},
			"wwan0:10.5.0.2>10.3.0.2 eth0:10.1.0.2>10.3.0.2", []bool{true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultRanker{}.Rank(tc.conn, tc.cands)
			if o := order(got); o != tc.want {
				t.Errorf("order\n got %s\nwant %s", o, tc.want)
			}
			for i, r := range got {
				if r.Rank != i+1 {
					t.Errorf("rank %d at %d", r.Rank, i)
				}
				if r.Eligible != tc.elig[i] {
					t.Errorf("#%d eligible=%t, want %t (%s)", i+1, r.Eligible, tc.elig[i], r.Reason)
				}
				if r.Reason == "" {
					t.Errorf("#%d has no reason", i+1)
				}
			}
		})
	}
}

func TestRankReasons(t *testing.T) {
	conn := ConnPolicy{Name: "office", NAT: NATForbid}.WithDefaults()
	eth := cand("10.1.0.2", "10.3.0.2", "eth0", PriorityEthernet, true)
	eth.RTT = 12 * time.Millisecond
	wlan := cand("10.2.0.2", "10.3.0.2", "wlan0", PriorityWLAN, true)
	nat := cand("10.6.0.2", "10.3.0.2", "wlan1", PriorityWLAN, true)
	nat.NAT = true
	dead := cand("10.7.0.2", "10.3.0.2", "eth1", PriorityEthernet, false)
	dead.State = "down"
	got := DefaultRanker{}.Rank(conn, []Candidate{dead, nat, wlan, eth})
	var lines []string
	for _, r := range got {
		lines = append(lines, fmt.Sprintf("%d %s %s", r.Rank, r.Uplink.Name, r.Reason))
	}
	want := []string{
		"1 eth0 best: uplink eth0 priority 300, sla met, cost 0, loss 0.0%, rtt 12ms",
		"2 wlan0 below #1 on priority 200 vs 300",
		"3 eth1 not operational (down)",
		"4 wlan1 nat forbidden",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestRankRTTHysteresis: two pairs of equal priority on 300 ms ± 50 ms
// paths straddle the 320 ms bucket boundary; the current pair stays unless
// the other is in a faster bucket than half the current RTT.
func TestRankRTTHysteresis(t *testing.T) {
	conn := ConnPolicy{Name: "office"}.WithDefaults()
	ms := time.Millisecond
	a := cand("10.1.0.2", "10.3.0.2", "eth0", PriorityEthernet, true)
	b := cand("10.2.0.2", "10.3.0.2", "eth1", PriorityEthernet, true)
	a.Current = true
	for _, tc := range []struct {
		cur, other time.Duration
		stay       bool
	}{
		{330 * ms, 270 * ms, true}, // classes 3 vs 2 without hysteresis
		{330 * ms, 150 * ms, true}, // twice as fast, but in half's class
		{330 * ms, 70 * ms, false}, // a bucket below half
		{300 * ms, 10 * ms, false},
		{25 * ms, 15 * ms, true},
		{50 * ms, 15 * ms, false},
	} {
		a.RTT, b.RTT = tc.cur, tc.other
		got := DefaultRanker{}.Rank(conn, []Candidate{a, b})
		if stay := got[0].Current; stay != tc.stay {
			t.Errorf("current %v vs other %v: first %s, want stay=%v", tc.cur, tc.other, order(got), tc.stay)
		}
	}
}

func TestRTTClass(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		want int
	}{{0, 0}, {4 * time.Millisecond, 0}, {19 * time.Millisecond, 0}, {20 * time.Millisecond, 1}, {79 * time.Millisecond, 1}, {80 * time.Millisecond, 2}, {319 * time.Millisecond, 2}, {320 * time.Millisecond, 3}, {time.Hour, 9}} {
		if got := RTTClass(tc.rtt); got != tc.want {
			t.Errorf("RTTClass(%s) = %d, want %d", tc.rtt, got, tc.want)
		}
	}
}

// slowRank is the obviously correct reference (H18): eligibility by a plain
// if-chain, a key vector per candidate, selection of the minimum vector
// repeatedly.
func slowRank(conn ConnPolicy, cands []Candidate) []Ranked {
	type entry struct {
		r   Ranked
		key []int
	}
	thresholds := []time.Duration{}
	for t := 20 * time.Millisecond; len(thresholds) < 30 && t < 1000*time.Hour; t *= 4 {
		thresholds = append(thresholds, t)
	}
	b := func(x bool) int {
		if x {
			return 1
		}
		return 0
	}
	v6 := true
	for _, c := range cands {
		if c.CurrentIs4 {
			v6 = false
		}
	}
	for _, c := range cands {
		if c.Current {
			v6 = c.Remote.Is6()
		}
	}
	var es []entry
	for _, c := range cands {
		allowed := len(conn.AllowedUplinks) == 0
		for _, a := range conn.AllowedUplinks {
			if a == c.Uplink.Name || a == c.Uplink.Kind.String() || (c.Uplink.Rule != "" && a == c.Uplink.Rule) {
				allowed = true
			}
		}
		eligible := allowed && !c.Uplink.Exclude && c.Usable && !(c.NAT && conn.NAT == NATForbid)
		maxLoss, maxRTT := conn.SLA.MaxLoss, float64(conn.SLA.MaxRTT)
		if c.Current {
			maxLoss, maxRTT = 1.5*maxLoss, 1.5*maxRTT // hysteresis for the incumbent
		}
		sla := c.Usable && c.Loss <= maxLoss && float64(c.RTT) <= maxRTT
		class, rtt := 0, c.RTT
		if c.Current {
			rtt /= 2 // hysteresis for the incumbent
		}
		for _, th := range thresholds {
			if rtt >= th {
				class++
			}
		}
		key := []int{b(!eligible), -c.Uplink.Priority, b(c.Deprecated), b(!sla), c.Uplink.Cost, b(c.Uplink.Metered), b(c.Remote.Is6() != v6), class, b(!c.Current)}
		for _, x := range c.Local.As16() {
			key = append(key, int(x))
		}
		for _, x := range c.Remote.As16() {
			key = append(key, int(x))
		}
		key = append(key, b(c.Local.Is6()), b(c.Remote.Is6())) // v4 sorts before v4-mapped-looking v6
		es = append(es, entry{Ranked{Candidate: c, Eligible: eligible, SLAMet: sla}, key})
	}
	var out []Ranked
	for len(es) > 0 {
		best := 0
		for i := range es {
			if slices.Compare(es[i].key, es[best].key) < 0 {
				best = i
			}
		}
		out = append(out, es[best].r)
		es = slices.Delete(es, best, best+1)
	}
	return out
}

func TestRankDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	locals := []string{"10.1.0.2", "10.2.0.2", "10.5.0.2", "2001:db8:1::2", "2001:db8:2::2"}
	remotes := []string{"10.3.0.2", "10.4.0.2", "2001:db8:3::2"}
	names := []string{"eth0", "wlan0", "wwan0"}
	kinds := []Kind{KindEthernet, KindWLAN, KindWWAN}
	for iter := 0; iter < 3000; iter++ {
		conn := ConnPolicy{Name: "c"}
		if rng.IntN(3) == 0 {
			conn.NAT = NATForbid
		}
		if rng.IntN(3) == 0 {
			conn.AllowedUplinks = []string{names[rng.IntN(3)], kinds[rng.IntN(3)].String()}
		}
		conn = conn.WithDefaults()
		n := rng.IntN(8)
		var cs []Candidate
		seen := map[[2]string]bool{}
		for len(cs) < n {
			l, r := locals[rng.IntN(len(locals))], remotes[rng.IntN(len(remotes))]
			if seen[[2]string{l, r}] {
				if len(seen) >= len(locals)*len(remotes) {
					break
				}
				continue
			}
			seen[[2]string{l, r}] = true
			u := rng.IntN(3)
			c := Candidate{
				Local: netip.MustParseAddr(l), Remote: netip.MustParseAddr(r),
				Uplink: UplinkPolicy{Name: names[u], Kind: kinds[u], Priority: []int{100, 200, 300}[rng.IntN(3)],
					Cost: rng.IntN(2), Metered: rng.IntN(2) == 0, Exclude: rng.IntN(10) == 0},
				Usable: rng.IntN(4) != 0, NAT: rng.IntN(4) == 0, Deprecated: rng.IntN(6) == 0,
				Loss: []float64{0, 0.05, 0.1, 0.2}[rng.IntN(4)],
				RTT:  time.Duration(rng.IntN(700)) * time.Millisecond,
			}
			cs = append(cs, c)
		}
		// The current pair's family is known to every candidate (as the
		// core sets it), also when the current pair is not a candidate.
		cur4 := rng.IntN(3) == 0
		if len(cs) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(cs))
			cs[i].Current = true
			cur4 = cs[i].Remote.Is4()
		}
		for i := range cs {
			cs[i].CurrentIs4 = cur4
		}
		got := DefaultRanker{}.Rank(conn, cs)
		want := slowRank(conn, cs)
		if order(got) != order(want) {
			t.Fatalf("iteration %d: order\n got %s\nwant %s", iter, order(got), order(want))
		}
		for i := range got {
			if got[i].Eligible != want[i].Eligible || got[i].SLAMet != want[i].SLAMet {
				t.Fatalf("iteration %d #%d: eligible/sla %t/%t, want %t/%t", iter, i, got[i].Eligible, got[i].SLAMet, want[i].Eligible, want[i].SLAMet)
			}
		}
		// Input order must not matter.
		rev := slices.Clone(cs)
		slices.Reverse(rev)
		if order(DefaultRanker{}.Rank(conn, rev)) != order(got) {
			t.Fatalf("iteration %d: ranking depends on input order", iter)
		}
	}
}

func TestDefaults(t *testing.T) {
	var s Settings
	s = s.WithDefaults()
	if s.SteerTimeout != DefaultSteerTimeout || s.Path.DownAfter != DefaultDownAfter || s.Path.DownLoss != DefaultDownLoss {
		t.Errorf("settings defaults: %+v", s)
	}
	c := s.Conn("x")
	if c.Name != "x" || c.HoldDown != DefaultHoldDown || c.MoveBudget != DefaultMoveBudget || c.MoveWindow != DefaultMoveWindow ||
		c.SLA.MaxLoss != DefaultSLAMaxLoss || c.SLA.MaxRTT != DefaultSLAMaxRTT || c.Method != MethodICMP {
		t.Errorf("conn defaults: %+v", c)
	}
	if c := (ConnPolicy{HoldDown: NoHoldDown}).WithDefaults(); c.Hold() != 0 {
		t.Errorf("NoHoldDown became %s", c.Hold())
	}
	if c := (Settings{Conns: []ConnPolicy{{Name: "a", HoldDown: NoHoldDown}}}).WithDefaults().Conn("a"); c.Hold() != 0 {
		t.Errorf("NoHoldDown through Settings became %s", c.Hold())
	}
	if c := (Settings{}).WithDefaults().Conn("x"); c.Hold() != DefaultHoldDown {
		t.Errorf("default hold-down %s", c.Hold())
	}
	if c := (Settings{Default: ConnPolicy{HoldDown: NoHoldDown}}).WithDefaults().Conn("x"); c.Hold() != 0 {
		t.Errorf("default NoHoldDown became %s", c.Hold())
	}
	for _, tc := range []struct {
		kind    Kind
		prio    int
		metered bool
	}{{KindEthernet, PriorityEthernet, false}, {KindWLAN, PriorityWLAN, false}, {KindWWAN, PriorityWWAN, true}, {KindUnknown, PriorityUnknown, false}} {
		u := s.Uplink("x", tc.kind)
		if u.Priority != tc.prio || u.Metered != tc.metered || u.MeteredStandby() != tc.metered {
			t.Errorf("%s: %+v", tc.kind, u)
		}
	}
	if !(PriorityEthernet > PriorityWLAN && PriorityWLAN > PriorityWWAN) {
		t.Error("zero-config order must be ethernet > wlan > wwan")
	}
	s2 := Settings{Uplinks: []UplinkPolicy{{Name: "eth0", Cost: 7}}, Conns: []ConnPolicy{{Name: "a", HoldDown: time.Second}}}.WithDefaults()
	if u := s2.Uplink("eth0", KindEthernet); u.Cost != 7 || u.Priority != PriorityEthernet || u.Kind != KindEthernet {
		t.Errorf("listed uplink: %+v", u)
	}
	if c := s2.Conn("a"); c.HoldDown != time.Second {
		t.Errorf("listed conn: %+v", c)
	}
	s3 := Settings{UplinkFor: func(name string, k Kind) UplinkPolicy { return UplinkPolicy{Priority: 5, Rule: "r"} }}
	if u := s3.Uplink("eth0", KindEthernet); u.Priority != 5 || u.Name != "eth0" || u.Rule != "r" {
		t.Errorf("UplinkFor: %+v", u)
	}
	if u := (UplinkPolicy{Metered: true, Profile: StandbyNormal}); u.MeteredStandby() {
		t.Error("StandbyNormal overrides metered")
	}
	if u := (UplinkPolicy{Profile: StandbyMetered}); !u.MeteredStandby() {
		t.Error("StandbyMetered")
	}
}

func TestEnumStrings(t *testing.T) {
	for _, s := range []fmt.Stringer{Kind(9), StandbyProfile(9), NATMode(9), Method(9)} {
		if !strings.Contains(s.String(), "(9)") {
			t.Errorf("%T(9) = %q", s, s)
		}
	}
	for _, s := range []fmt.Stringer{KindUnknown, KindEthernet, KindWLAN, KindWWAN, StandbyAuto, StandbyNormal, StandbyMetered, NATAllow, NATForbid, MethodDefault, MethodICMP, MethodSTAMP, MethodIKE} {
		if s.String() == "" || strings.Contains(s.String(), "(") {
			t.Errorf("%T %d = %q", s, s, s)
		}
	}
}

// The reasons are built without fmt (a ranking runs on every probe result
// that changes a pair's inputs); they must read as fmt's did.
func TestPercentMatchesFmt(t *testing.T) {
	for _, x := range []float64{0, 0.0004999, 0.0005, 0.00051, 0.1, 1.0 / 3, 0.9995, 1, 12.5, math.NaN(), math.Inf(1), -0.25} {
		if got, want := percent(x), fmt.Sprintf("%.1f%%", 100*x); got != want {
			t.Errorf("percent(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestSLAMetCurrentHysteresis(t *testing.T) {
	sla := SLA{MaxLoss: 0.1, MaxRTT: 200 * time.Millisecond}
	for _, tc := range []struct {
		loss        float64
		rtt         time.Duration
		met, metCur bool
	}{
		{0.1, 200 * time.Millisecond, true, true},
		{0.12, 100 * time.Millisecond, false, true},
		{0.15, 100 * time.Millisecond, false, true},
		{0.151, 100 * time.Millisecond, false, false},
		{0, 300 * time.Millisecond, false, true},
		{0, 301 * time.Millisecond, false, false},
	} {
		if got := sla.Met(tc.loss, tc.rtt); got != tc.met {
			t.Errorf("Met(%v, %v) = %t", tc.loss, tc.rtt, got)
		}
		if got := sla.MetCurrent(tc.loss, tc.rtt); got != tc.metCur {
			t.Errorf("MetCurrent(%v, %v) = %t", tc.loss, tc.rtt, got)
		}
		c := Candidate{Usable: true, Loss: tc.loss, RTT: tc.rtt}
		if SLAMet(sla, c) != tc.met {
			t.Errorf("SLAMet candidate %+v", tc)
		}
		c.Current = true
		if SLAMet(sla, c) != tc.metCur {
			t.Errorf("SLAMet current %+v", tc)
		}
	}
}
