package mobike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

var t0 = time.Unix(1000, 0).UTC()

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func mkPair(l, r string) Pair { return Pair{Local: ip(l), Remote: ip(r)} }

var (
	pEth  = mkPair("10.1.0.2", "10.3.0.2")
	pWlan = mkPair("10.2.0.2", "10.3.0.2")
)

// laptopNet: eth0 (index 2) and wlan0 (index 3), both up with a gateway.
func laptopNet() NetState {
	return NetState{
		Links: []Link{{Index: 2, Name: "eth0", Kind: KindEthernet, Up: true}, {Index: 3, Name: "wlan0", Kind: KindWLAN, Up: true}},
		Addrs: []Address{
			{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2},
			{Prefix: netip.MustParsePrefix("10.2.0.2/24"), LinkIdx: 3},
			{Prefix: netip.MustParsePrefix("fe80::1/64"), LinkIdx: 2},
		},
		Gateways: []Gateway{{LinkIdx: 2, Via: ip("10.1.0.1"), Metric: 100}, {LinkIdx: 3, Via: ip("10.2.0.1"), Metric: 200}},
	}
}

func sa(id uint32, p Pair, initiator bool) SA {
	return SA{Conn: "office", UniqueID: id, State: IKEEstablished, Initiator: initiator,
		Local: netip.AddrPortFrom(p.Local, 4500), Remote: netip.AddrPortFrom(p.Remote, 4500)}
}

func good(p Pair, now time.Time) EvProbeResult {
	return EvProbeResult{Pair: p, OK: true, RTT: 10 * time.Millisecond, At: now,
		Stats: PathStats{Sent: 10, Received: 10, SRTT: 10 * time.Millisecond, NAT: NATNone, LastReply: now}}
}

func lost(p Pair, now time.Time, n int) EvProbeResult {
	return EvProbeResult{Pair: p, At: now, Stats: PathStats{Sent: 10, Received: uint64(10 - n), ConsecLost: n, LossRatio: float64(n) / 10}}
}

// setup returns a controller with the laptop, connection office to 10.3.0.2,
// one SA on eth and both pairs operational.
func setup(t *testing.T, pol policy.Settings, initiator bool) *Controller {
	t.Helper()
	c := New(Config{Policy: pol})
	c.Step(at(0), EvNetState{State: laptopNet(), Reasons: []NetReason{NetResync}})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2")}}}})
	c.Step(at(0), EvSAList{SAs: []SA{sa(1, pEth, initiator)}})
	c.Step(at(0.01), good(pEth, at(0.01)))
	c.Step(at(0.03), good(pWlan, at(0.03)))
	c.TakeTrace()
	return c
}

func kinds(acts []Action) string {
	var s []string
	for _, a := range acts {
		switch a := a.(type) {
		case ActProbeStart:
			s = append(s, fmt.Sprintf("start %s %s", a.Pair, a.Profile))
		case ActProbeStop:
			s = append(s, fmt.Sprintf("stop %s", a.Pair))
		case ActRouting:
			var gs []string
			for _, g := range a.State.Groups {
				gs = append(gs, g.Name+"@"+g.Pair.String())
			}
			s = append(s, "routing "+strings.Join(gs, ","))
		case ActAlert:
			s = append(s, fmt.Sprintf("alert %s", a.Reason))
		case ActProbeConfirm:
			s = append(s, fmt.Sprintf("confirm %s", a.Pair))
		case ActArmRoam:
			s = append(s, fmt.Sprintf("arm-roam %s", a.Pair))
		}
	}
	return strings.Join(s, "; ")
}

// routed returns the group entry of the last ActRouting in acts for name.
func routed(acts []Action, name string) (DesiredGroup, bool) {
	var out DesiredGroup
	found := false
	for _, a := range acts {
		if r, ok := a.(ActRouting); ok {
			found = false
			for _, g := range r.State.Groups {
				if g.Name == name {
					out, found = g, true
				}
			}
		}
	}
	return out, found
}

func traceHas(obs []Observation, sub string) bool {
	for _, o := range obs {
		if strings.Contains(o.String(), sub) {
			return true
		}
	}
	return false
}

func TestProbeStartsOnlyOnChange(t *testing.T) {
	c := New(Config{})
	if acts := c.Step(at(0), EvNetState{State: laptopNet()}); len(acts) != 0 {
		t.Fatalf("no peers yet, got %s", kinds(acts))
	}
	conns := EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2"), ip("fe80::9")}}}}
	acts := c.Step(at(0), conns)
	if got, want := kinds(acts), "start 10.1.0.2->10.3.0.2 standby; start 10.2.0.2->10.3.0.2 standby"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if acts := c.Step(at(1), conns); len(acts) != 0 {
		t.Errorf("identical conns re-emitted %s", kinds(acts))
	}
	acts = c.Step(at(1), EvSAList{SAs: []SA{sa(1, pEth, true)}})
	if got, want := kinds(acts), "start 10.1.0.2->10.3.0.2 active; routing office@10.1.0.2->10.3.0.2"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if !c.NextDeadline().IsZero() {
		t.Errorf("deadline %s with nothing pending", c.NextDeadline())
	}
	st := c.Snapshot()
	if len(st.Pairs) != 2 || st.Pairs[0].State != PathTesting || st.Pairs[0].Probe.Profile != ProfileActive {
		t.Errorf("pairs %+v", st.Pairs)
	}
}

func TestSteerOnDownAndConfirm(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	if acts := c.Step(at(1), lost(pEth, at(1), 2)); len(acts) != 0 {
		t.Fatalf("2 losses: %s", kinds(acts))
	}
	// Down on the probes' evidence: the candidate, last heard 2 s ago, is
	// confirmed first (a burst); its reply 5 ms later is the move.
	acts := c.Step(at(2), lost(pEth, at(2), 3))
	if got, want := kinds(acts), "confirm 10.2.0.2->10.3.0.2"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	// wlan0's expected answer: 3 × SRTT (10 ms) + the scheduling slack.
	if got, want := c.NextDeadline(), at(2).Add(30*time.Millisecond+answerSlack); !got.Equal(want) {
		t.Errorf("deadline %s, want the answer wait %s", got, want)
	}
	acts = c.Step(at(2.005), good(pWlan, at(2.005)))
	if got, want := kinds(acts), "start 10.2.0.2->10.3.0.2 active; routing office@10.2.0.2->10.3.0.2"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	st, _ := routed(acts, "office")
	if st.LinkIdx != 3 || st.Uplink != "wlan0" || st.Nexthop != ip("10.2.0.1") || len(st.Prohibit) != 0 {
		t.Errorf("steer %+v", st)
	}
	if u := acts[1].(ActRouting).State.Uplinks; len(u) != 2 || u[0].Name != "eth0" || u[1].Name != "wlan0" {
		t.Errorf("uplinks %+v", u)
	}
	if got, want := c.NextDeadline(), at(2.005).Add(policy.DefaultSteerTimeout); !got.Equal(want) {
		t.Errorf("deadline %s, want %s", got, want)
	}
	tr := c.TakeTrace()
	if !traceHas(tr, "operational -> down (consecutive-loss)") || !traceHas(tr, "confirm-requested office off 10.1.0.2->10.3.0.2 (forced): 10.2.0.2->10.3.0.2") ||
		!traceHas(tr, "steer-requested office") {
		t.Errorf("trace %v", tr)
	}
	acts = c.Step(at(2.1), EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.AddrPortFrom(pWlan.Local, 4500), NewRemote: netip.AddrPortFrom(pWlan.Remote, 4500)})
	if got, want := kinds(acts), "start 10.1.0.2->10.3.0.2 standby"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if !traceHas(c.TakeTrace(), "steer-confirmed office 10.2.0.2->10.3.0.2 after 95ms") {
		t.Error("not confirmed")
	}
	if !c.NextDeadline().IsZero() {
		t.Errorf("deadline %s after confirmation", c.NextDeadline())
	}
}

func TestSteerTimeoutBacksOff(t *testing.T) {
	c := setup(t, policy.Settings{SteerBackoff: 10 * time.Second, SteerBackoffMax: 15 * time.Second}, true)
	c.Step(at(2), lost(pEth, at(2), 3))
	c.Step(at(2), good(pWlan, at(2))) // the confirmation's reply
	now := c.NextDeadline()
	var backoffs []time.Duration
	for i := 0; i < 4; i++ {
		acts := c.Step(now, EvTimer{})
		if got := kinds(acts); !strings.Contains(got, "alert steer-unconfirmed") {
			t.Fatalf("round %d: %s", i, got)
		}
		for _, o := range c.TakeTrace() {
			if f, ok := o.(SteerFailed); ok {
				backoffs = append(backoffs, f.Backoff)
			}
		}
		next := c.NextDeadline()
		if acts := c.Step(next.Add(-time.Millisecond), EvTimer{}); len(acts) != 0 {
			t.Fatalf("acted before backoff end: %s", kinds(acts))
		}
		// A fresh reply (the standby prober's) needs no burst.
		acts = c.Step(next, good(pWlan, next))
		if !strings.Contains(kinds(acts), "routing office@10.2.0.2") {
			t.Fatalf("no retry after backoff: %s", kinds(acts))
		}
		now = c.NextDeadline()
	}
	want := []time.Duration{10 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
	if !slices.Equal(backoffs, want) {
		t.Errorf("backoffs %v, want %v", backoffs, want)
	}
}

func TestProhibitOtherPeersAndLearn(t *testing.T) {
	c := New(Config{Policy: policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", ExtraPeers: []netip.Addr{ip("10.4.0.2")}}}}})
	c.Step(at(0), EvNetState{State: laptopNet()})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2")}}}})
	c.Step(at(0), EvSAList{SAs: []SA{sa(1, pEth, true)}})
	// charon moved on its own to an address nobody told us about.
	c.Step(at(1), EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.AddrPortFrom(ip("10.1.0.2"), 4500), NewRemote: netip.AddrPortFrom(ip("10.6.0.2"), 4500)})
	if !traceHas(c.TakeTrace(), "peer-learned office 10.6.0.2") {
		t.Fatal("peer not learned")
	}
	p6 := mkPair("10.1.0.2", "10.6.0.2")
	c.Step(at(1.1), good(p6, at(1.1)))
	c.Step(at(1.1), good(pWlan, at(1.1)))
	c.Step(at(2), lost(p6, at(2), 3))
	acts := c.Step(at(2.01), good(pWlan, at(2.01)))
	st, _ := routed(acts, "office")
	if st.Pair != pWlan {
		t.Fatalf("steer %+v (%s)", st, kinds(acts))
	}
	if want := []netip.Addr{ip("10.4.0.2"), ip("10.6.0.2")}; !slices.Equal(st.Prohibit, want) {
		t.Errorf("prohibit %v, want %v", st.Prohibit, want)
	}
}

func TestResponderMonitorOnly(t *testing.T) {
	c := setup(t, policy.Settings{}, false)
	acts := c.Step(at(2), lost(pEth, at(2), 3))
	if strings.Contains(kinds(acts), "routing") {
		t.Errorf("responder steered: %s", kinds(acts))
	}
	if d := c.Snapshot().Conns[0].Decision; !strings.Contains(d, "monitor only") {
		t.Errorf("decision %q", d)
	}
}

func TestSteerApplyErrorAndCharonDown(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	c.Step(at(2), lost(pEth, at(2), 3))
	acts := c.Step(at(2), good(pWlan, at(2)))
	gen := acts[len(acts)-1].(ActRouting).Gen
	acts = c.Step(at(2), EvRoutingApplied{Gen: gen, Failed: []string{"office"}, Err: errors.New("eperm")})
	// The failed steer is dropped: the routing state goes back to the pair
	// the SA is on.
	if got := kinds(acts); got != "start 10.2.0.2->10.3.0.2 standby; routing office@10.1.0.2->10.3.0.2; alert steer-apply-failed" {
		t.Errorf("got %s", got)
	}
	if c.Snapshot().Conns[0].Failures != 1 {
		t.Error("failure not counted")
	}
	c.Step(at(2), EvRoutingApplied{Gen: gen, Failed: []string{"nobody"}, Err: errors.New("eperm")})
	c.TakeTrace()
	c.Step(at(3), EvCharon{Up: false})
	tr := c.TakeTrace()
	if !traceHas(tr, "charon up=false") || !traceHas(tr, "sa-removed office#1") {
		t.Errorf("trace %v", tr)
	}
	if st := c.Snapshot(); st.CharonUp || len(st.SAs) != 0 {
		t.Errorf("snapshot %+v", st)
	}
	c.Step(at(4), EvCharon{Up: true})
	c.Step(at(4), EvSAList{SAs: []SA{sa(7, pWlan, true)}})
	if st := c.Snapshot(); len(st.SAs) != 1 || st.SAs[0].Pair != pWlan || st.Conns[0].Current != pWlan {
		t.Errorf("after resync %+v", st.SAs)
	}
}

func TestPendingAbandonedWhenTargetDies(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	c.Step(at(2), lost(pEth, at(2), 3))
	c.Step(at(2.01), good(pWlan, at(2.01))) // the confirmation's reply
	c.TakeTrace()
	c.Step(at(2.5), lost(pWlan, at(2.5), 3))
	tr := c.TakeTrace()
	if !traceHas(tr, "steer-failed office 10.2.0.2->10.3.0.2 target-unusable (target no longer usable)") || !traceHas(tr, "no-path office") {
		t.Errorf("trace %v", tr)
	}
}

func TestRekeyAndSADown(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	n := sa(5, pEth, true)
	c.Step(at(1), EvSARekey{OldID: 1, New: n})
	if st := c.Snapshot(); len(st.SAs) != 1 || st.SAs[0].UniqueID != 5 {
		t.Fatalf("after rekey %+v", st.SAs)
	}
	c.Step(at(2), EvSADown{Conn: "office", UniqueID: 5})
	c.Step(at(2), EvSADown{Conn: "office", UniqueID: 99})
	if st := c.Snapshot(); len(st.SAs) != 0 || st.Conns[0].Decision != "no SA" {
		t.Errorf("after down %+v", st.Conns)
	}
	// The pair an SA is on goes back to standby.
	if p := c.Snapshot().Pairs[0]; p.Probe.Profile != ProfileStandby {
		t.Errorf("profile %s", p.Probe.Profile)
	}
	// A connection charon no longer has and no SA uses is forgotten.
	c.Step(at(3), EvConns{})
	if st := c.Snapshot(); len(st.Conns) != 0 || len(st.Pairs) != 0 {
		t.Errorf("conn not forgotten: %+v %+v", st.Conns, st.Pairs)
	}
}

func TestPreferAndClear(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	acts := c.Step(at(1), EvPrefer{Conn: "office", Uplink: "wlan0", Until: at(100)})
	if !strings.Contains(kinds(acts), "routing office@10.2.0.2->10.3.0.2") {
		t.Fatalf("prefer: %s", kinds(acts))
	}
	c.Step(at(1.1), EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.AddrPortFrom(pWlan.Local, 4500), NewRemote: netip.AddrPortFrom(pWlan.Remote, 4500)})
	if got := c.NextDeadline(); !got.Equal(at(100)) {
		t.Errorf("deadline %s, want the override's end", got)
	}
	acts = c.Step(at(2), EvPrefer{Conn: "office"})
	if len(acts) != 0 {
		t.Errorf("moved back before the hold-down: %s", kinds(acts))
	}
	if got := c.NextDeadline(); !got.Equal(at(10.01)) {
		t.Errorf("deadline %s, want the hold-down end", got)
	}
	acts = c.Step(c.NextDeadline(), EvTimer{})
	if !strings.Contains(kinds(acts), "routing office@10.1.0.2->10.3.0.2") {
		t.Errorf("clear did not return to the best pair: %s", kinds(acts))
	}
	if !traceHas(c.TakeTrace(), "prefer-cleared office") {
		t.Error("no prefer-cleared")
	}
}

func TestConfigExcludeAndSnapshot(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	acts := c.Step(at(1), EvConfig{Policy: policy.Settings{Uplinks: []policy.UplinkPolicy{{Name: "eth0", Exclude: true}}}})
	if got, want := kinds(acts), "stop 10.1.0.2->10.3.0.2; start 10.2.0.2->10.3.0.2 active; routing office@10.2.0.2->10.3.0.2"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	tr := c.TakeTrace()
	if !traceHas(tr, "config-applied") || !traceHas(tr, "pair-removed 10.1.0.2->10.3.0.2 (excluded)") {
		t.Errorf("trace %v", tr)
	}
	st := c.Snapshot()
	if len(st.Uplinks) != 2 || !st.Uplinks[0].Policy.Exclude || st.Uplinks[0].Addrs[0].Why != ReasonExcluded || st.Uplinks[0].Addrs[1].Available {
		t.Errorf("uplinks %+v", st.Uplinks)
	}
	if !slices.Equal(st.Uplinks[1].Gateway, []netip.Addr{ip("10.2.0.1")}) {
		t.Errorf("gateway %v", st.Uplinks[1].Gateway)
	}
	cv := st.Conns[0]
	if !cv.Steering || cv.SteerTo != pWlan || cv.MovesInWindow != 1 || len(cv.Ranking) != 1 || !strings.HasPrefix(cv.Ranking[0].Reason, "best:") {
		t.Errorf("conn view %+v", cv)
	}
}

func TestLateProbeResultIgnored(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	if acts := c.Step(at(1), lost(mkPair("10.9.0.2", "10.3.0.2"), at(1), 5)); len(acts) != 0 {
		t.Errorf("unknown pair: %s", kinds(acts))
	}
}

func TestTraceLimit(t *testing.T) {
	c := New(Config{TraceLimit: 4})
	for i := 0; i < 10; i++ {
		c.Step(at(float64(i)), EvCharon{Up: i%2 == 0})
	}
	if n := len(c.TakeTrace()); n > 4 || n == 0 {
		t.Errorf("%d observations kept, limit 4", n)
	}
	if len(c.TakeTrace()) != 0 {
		t.Error("TakeTrace did not clear")
	}
}

func TestMoveBudgetBlocksFailback(t *testing.T) {
	pol := policy.Settings{Default: policy.ConnPolicy{MoveBudget: 1, HoldDown: time.Second}}
	c := setup(t, pol, true)
	c.Step(at(2), lost(pEth, at(2), 3)) // forced move: allowed, counted
	c.Step(at(2.01), good(pWlan, at(2.01)))
	c.Step(at(2.1), EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.AddrPortFrom(pWlan.Local, 4500), NewRemote: netip.AddrPortFrom(pWlan.Remote, 4500)})
	c.Step(at(3), good(pEth, at(3)))
	c.Step(at(3.2), good(pEth, at(3.2)))
	c.TakeTrace()
	acts := c.Step(at(4.5), EvTimer{})
	if got := kinds(acts); got != "alert move-budget-exhausted" {
		t.Fatalf("got %s", got)
	}
	if got, want := c.NextDeadline(), at(2.01).Add(time.Minute); !got.Equal(want) {
		t.Errorf("deadline %s, want %s (window end)", got, want)
	}
	acts = c.Step(c.NextDeadline(), EvTimer{})
	if !strings.Contains(kinds(acts), "routing office@10.1.0.2->10.3.0.2") {
		t.Errorf("no failback after the window: %s", kinds(acts))
	}
}

func TestDeterministicOrder(t *testing.T) {
	run := func() string {
		c := New(Config{})
		var out []string
		step := func(now time.Time, ev Event) {
			for _, a := range c.Step(now, ev) {
				out = append(out, fmt.Sprintf("%T%+v", a, a))
			}
			for _, o := range c.TakeTrace() {
				out = append(out, o.String())
			}
		}
		step(at(0), EvNetState{State: laptopNet()})
		var conns []Conn
		var sas []SA
		for i := 0; i < 20; i++ {
			name := fmt.Sprintf("c%02d", 19-i)
			conns = append(conns, Conn{Name: name, RemoteAddrs: []netip.Addr{ip("10.3.0.2"), ip(fmt.Sprintf("10.3.1.%d", i))}})
			s := sa(uint32(100-i), pEth, true)
			s.Conn = name
			sas = append(sas, s)
		}
		step(at(0), EvConns{Conns: conns})
		step(at(0), EvSAList{SAs: sas})
		step(at(1), good(pWlan, at(1)))
		step(at(2), lost(pEth, at(2), 3))
		step(at(2.01), good(pWlan, at(2.01)))
		return strings.Join(out, "\n")
	}
	a, b := run(), run()
	if a != b {
		t.Error("two identical runs differ")
	}
	if !strings.Contains(a, "steer-requested c00(+19)") {
		t.Errorf("no steer in\n%s", a)
	}
}

func TestStrings(t *testing.T) {
	obs := []Observation{
		PathStateChanged{}, PairAdded{}, PairRemoved{}, PeerLearned{}, SAMoved{}, SAMoved{Steered: true},
		SAAdded{}, SAAdded{Initiator: true}, SARemoved{}, SteerRequested{}, SteerRequested{Forced: true},
		SteerConfirmed{}, SteerFailed{}, HoldDownStarted{}, NATExcluded{}, MoveBudgetExhausted{}, NoPath{},
		PolicyConflict{}, PolicyConflict{Detail: "x"},
		PreferChanged{}, PreferChanged{Uplink: "x"}, ConfigApplied{}, CharonChanged{},
		ConfirmRequested{}, ConfirmRequested{Forced: true}, TrafficHint{},
	}
	for _, o := range obs {
		if o.String() == "" {
			t.Errorf("%T renders empty", o)
		}
	}
	for _, s := range []fmt.Stringer{PathState(99), PathReason(99), pathInput(99), SteerCause(99), FailCause(99), AlertReason(99)} {
		if !strings.Contains(s.String(), "(99)") {
			t.Errorf("%T fallback %q", s, s)
		}
	}
	for r := ReasonNone; r <= ReasonResponderOnly; r++ {
		if strings.Contains(r.String(), "(") {
			t.Errorf("reason %d unnamed", r)
		}
	}
	for in := pathInput(0); in < numInputs; in++ {
		if strings.Contains(in.String(), "(") {
			t.Errorf("input %d unnamed", in)
		}
	}
	if probeMethod(policy.MethodSTAMP) != ProbeSTAMP || probeMethod(policy.MethodIKE) != ProbeIKE || probeMethod(policy.MethodDefault) != ProbeICMP {
		t.Error("probeMethod")
	}
}

func TestSteerDivertedToKnownPeer(t *testing.T) {
	c := New(Config{})
	c.Step(at(0), EvNetState{State: laptopNet()})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2"), ip("10.4.0.2")}}}})
	c.Step(at(0), EvSAList{SAs: []SA{sa(1, pEth, true)}})
	p4 := mkPair("10.1.0.2", "10.4.0.2")
	for _, p := range []Pair{pEth, pWlan, p4, mkPair("10.2.0.2", "10.4.0.2")} {
		c.Step(at(0.1), good(p, at(0.1)))
	}
	// The forced move confirms its candidates; only (wlan0, 10.4.0.2)
	// answers, so once the others' answer wait is over it is the target.
	if got := kinds(c.Step(at(2), lost(pEth, at(2), 3))); strings.Contains(got, "routing") || !strings.Contains(got, "confirm 10.2.0.2->10.4.0.2") {
		t.Fatalf("got %s", got)
	}
	c.Step(at(2.005), good(mkPair("10.2.0.2", "10.4.0.2"), at(2.005)))
	if got := kinds(c.Step(c.NextDeadline(), EvTimer{})); !strings.Contains(got, "routing office@10.2.0.2->10.4.0.2") {
		t.Fatalf("got %s", got)
	}
	c.TakeTrace()
	// charon lands on (wlan, 10.3.0.2): a known address, a different pair.
	acts := c.Step(at(2.1), EvIKEUpdate{Conn: "office", UniqueID: 1, NewLocal: netip.AddrPortFrom(pWlan.Local, 4500), NewRemote: netip.AddrPortFrom(pWlan.Remote, 4500)})
	if got := kinds(acts); !strings.Contains(got, "alert steer-diverted") || strings.Contains(got, "routing office@10.2.0.2->10.4.0.2") {
		t.Errorf("got %s", got)
	}
	if !traceHas(c.TakeTrace(), "steer-failed office 10.2.0.2->10.4.0.2 wrong-path (charon moved to 10.2.0.2->10.3.0.2 instead) backoff 10s") {
		t.Error("no diversion failure")
	}
	if cv := c.Snapshot().Conns[0]; cv.Current != pWlan || cv.Steering {
		t.Errorf("conn %+v", cv)
	}
}

// A steer of many SAs is not given up while charon keeps moving them: each
// timeout that saw progress waits another one; a timeout without progress
// fails.
func TestSteerWaitsWhileCharonProgresses(t *testing.T) {
	c := New(Config{})
	c.Step(at(0), EvNetState{State: laptopNet()})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2")}}}})
	c.Step(at(0), EvSAList{SAs: []SA{sa(1, pEth, true), sa(2, pEth, true), sa(3, pEth, true)}})
	c.Step(at(0.01), good(pEth, at(0.01)))
	c.Step(at(0.03), good(pWlan, at(0.03)))
	c.Step(at(2), lost(pEth, at(2), 3))
	c.Step(at(2), good(pWlan, at(2)))
	move := func(now float64, id uint32) {
		c.Step(at(now), EvIKEUpdate{Conn: "office", UniqueID: id, NewLocal: netip.AddrPortFrom(pWlan.Local, 4500), NewRemote: netip.AddrPortFrom(pWlan.Remote, 4500)})
	}
	move(2.5, 1)
	c.TakeTrace()
	dl := c.NextDeadline() // 5 s: one SA moved since the steer
	c.Step(dl, EvTimer{})
	if tr := c.TakeTrace(); traceHas(tr, "steer-failed") {
		t.Fatalf("failed while charon was moving SAs: %v", tr)
	}
	move(6, 2)
	move(7, 3)
	if !traceHas(c.TakeTrace(), "steer-confirmed office 10.2.0.2->10.3.0.2 after 5s") {
		t.Fatal("not confirmed")
	}
	// No progress: fails at the deadline.
	c2 := setup(t, policy.Settings{}, true)
	c2.Step(at(2), lost(pEth, at(2), 3))
	c2.Step(at(2), good(pWlan, at(2)))
	c2.TakeTrace()
	c2.Step(c2.NextDeadline(), EvTimer{})
	if !traceHas(c2.TakeTrace(), "steer-failed office 10.2.0.2->10.3.0.2 unconfirmed") {
		t.Fatal("no failure without progress")
	}
}
