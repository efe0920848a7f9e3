package steer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// fakeKernel keeps rules and routes in memory, behaves like the kernel where
// the steerer depends on it (EEXIST on a duplicate route add, rule dumps
// without the action type) and records every change as a line.
type fakeKernel struct {
	rules  []netlink.Rule
	routes []netlink.Route
	ops    []string
	// failRoute makes RouteAdd/RouteReplace of this destination fail.
	failRoute string
	// failRuleDel makes RuleDel of rules with this priority fail.
	failRuleDel int
}

func pfx(n *net.IPNet) string {
	if n == nil {
		return "all"
	}
	return n.String()
}

func ruleLine(r *netlink.Rule) string {
	act := fmt.Sprintf("lookup %d", r.Table)
	if r.Type == unix.FR_ACT_PROHIBIT || r.Table == 0 {
		act = "prohibit"
	}
	if r.SuppressPrefixlen >= 0 {
		act += fmt.Sprintf(" suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	fam := "4"
	if r.Family == unix.AF_INET6 {
		fam = "6"
	}
	return fmt.Sprintf("%d v%s from %s to %s %s proto %d", r.Priority, fam, pfx(r.Src), pfx(r.Dst), act, r.Protocol)
}

func routeLine(r *netlink.Route) string {
	s := fmt.Sprintf("table %d %s", r.Table, pfx(r.Dst))
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += fmt.Sprintf(" dev %d", r.LinkIndex)
	if r.Src != nil {
		s += " src " + r.Src.String()
	}
	return s
}

func (f *fakeKernel) RuleList(int) ([]netlink.Rule, error) { return slices.Clone(f.rules), nil }

func (f *fakeKernel) RuleAdd(r *netlink.Rule) error {
	c := *r
	c.Type = 0 // the dump does not report it
	f.rules = append(f.rules, c)
	f.ops = append(f.ops, "add rule "+ruleLine(r))
	return nil
}

func (f *fakeKernel) RuleDel(r *netlink.Rule) error {
	if f.failRuleDel != 0 && r.Priority == f.failRuleDel {
		return unix.EBUSY
	}
	for i, x := range f.rules {
		if x.Priority == r.Priority && x.Family == r.Family && pfx(x.Src) == pfx(r.Src) && pfx(x.Dst) == pfx(r.Dst) && x.Table == r.Table && x.Protocol == r.Protocol {
			f.rules = slices.Delete(f.rules, i, i+1)
			f.ops = append(f.ops, "del rule "+ruleLine(r))
			return nil
		}
	}
	return unix.ENOENT
}

func (f *fakeKernel) RouteListFiltered(_ int, flt *netlink.Route, _ uint64) ([]netlink.Route, error) {
	var out []netlink.Route
	for _, r := range f.routes {
		if r.Protocol == flt.Protocol {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeKernel) find(r *netlink.Route) int {
	return slices.IndexFunc(f.routes, func(x netlink.Route) bool { return x.Table == r.Table && pfx(x.Dst) == pfx(r.Dst) })
}

func (f *fakeKernel) RouteAdd(r *netlink.Route) error {
	if pfx(r.Dst) == f.failRoute {
		return unix.EPERM
	}
	if f.find(r) >= 0 {
		return unix.EEXIST
	}
	f.routes = append(f.routes, *r)
	f.ops = append(f.ops, "add route "+routeLine(r))
	return nil
}

func (f *fakeKernel) RouteReplace(r *netlink.Route) error {
	if pfx(r.Dst) == f.failRoute {
		return unix.EPERM
	}
	if i := f.find(r); i >= 0 {
		f.routes[i] = *r
	} else {
		f.routes = append(f.routes, *r)
	}
	f.ops = append(f.ops, "replace route "+routeLine(r))
	return nil
}

func (f *fakeKernel) RouteDel(r *netlink.Route) error {
	i := f.find(r)
	if i < 0 {
		return unix.ESRCH
	}
	f.routes = slices.Delete(f.routes, i, i+1)
	f.ops = append(f.ops, "del route "+routeLine(r))
	return nil
}

func (f *fakeKernel) take() []string {
	ops := f.ops
	f.ops = nil
	return ops
}

func newFake(t *testing.T, k *fakeKernel) *Steerer {
	t.Helper()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newWith(o, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	v6peer = netip.MustParseAddr("fd00:3::2")
	upA    = mobike.DesiredUplink{Name: "a0", LinkIdx: 2, Local: []netip.Addr{la}, Gateways: []netip.Addr{gwa}}
	upB    = mobike.DesiredUplink{Name: "b0", LinkIdx: 3, Local: []netip.Addr{lb}, Gateways: []netip.Addr{gwb}}
)

func state(groups ...mobike.DesiredGroup) mobike.Desired {
	return mobike.Desired{Uplinks: []mobike.DesiredUplink{upA, upB}, Groups: groups}
}

func grp(name string, l, r netip.Addr, link int, nh netip.Addr, prohibit ...netip.Addr) mobike.DesiredGroup {
	return mobike.DesiredGroup{Name: name, Members: []string{name}, Pair: mobike.Pair{Local: l, Remote: r}, LinkIdx: link, Nexthop: nh, Prohibit: prohibit}
}

func mustSet(t *testing.T, s *Steerer, d mobike.Desired) {
	t.Helper()
	if failed, err := s.Set(d); err != nil || len(failed) != 0 {
		t.Fatalf("set: failed %v, %v", failed, err)
	}
}

func TestSetOrder(t *testing.T) {
	k := &fakeKernel{rules: []netlink.Rule{
		// Foreign rules inside the band (no protocol 77) stay untouched.
		{Priority: 1045, Dst: &net.IPNet{IP: net.IPv4(192, 0, 2, 1).To4(), Mask: net.CIDRMask(32, 32)}},
	}}
	s := newFake(t, k)
	if ops := k.take(); len(ops) != 0 {
		t.Fatalf("new changed the kernel: %q", ops)
	}
	mustSet(t, s, state())
	if got, want := k.take(), []string{
		"add route table 2101 0.0.0.0/0 via 10.1.0.1 dev 2",
		"add route table 2102 0.0.0.0/0 via 10.2.0.1 dev 3",
		"add rule 1000 v4 from all to all lookup 254 suppress_prefixlength 0 proto 77",
		"add rule 1000 v6 from all to all lookup 254 suppress_prefixlength 0 proto 77",
		"add rule 1001 v4 from 10.1.0.2/32 to all lookup 2101 proto 77",
		"add rule 1001 v4 from 10.2.0.2/32 to all lookup 2102 proto 77",
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("uplinks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	steps := []struct {
		name string
		d    mobike.Desired
		want []string
	}{
		{"first", state(grp("p", la, r1, 2, gwa, r2, v6peer)), []string{
			"add route table 2100 10.3.0.2/32 via 10.1.0.1 dev 2 src 10.1.0.2",
			"add rule 1050 v4 from all to 10.3.0.2/32 lookup 2100 proto 77",
			"add rule 1040 v4 from all to 10.4.0.2/32 prohibit proto 77",
			"add rule 1040 v6 from all to fd00:3::2/128 prohibit proto 77",
		}},
		{"same again", state(grp("p", la, r1, 2, gwa, r2, v6peer)), nil},
		{"local move: one atomic replace", state(grp("p", lb, r1, 3, gwb, r2, v6peer)), []string{
			"replace route table 2100 10.3.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
		}},
		{"remote move: make before break", state(grp("p", lb, r2, 3, gwb, r1, v6peer)), []string{
			"add route table 2100 10.4.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
			"add rule 1050 v4 from all to 10.4.0.2/32 lookup 2100 proto 77",
			"del rule 1040 v4 from all to 10.4.0.2/32 prohibit proto 77",
			"add rule 1040 v4 from all to 10.3.0.2/32 prohibit proto 77",
			"del rule 1050 v4 from all to 10.3.0.2/32 lookup 2100 proto 77",
			"del route table 2100 10.3.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
		}},
	}
	for _, st := range steps {
		mustSet(t, s, st.d)
		if got := k.take(); strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", st.name, strings.Join(got, "\n"), strings.Join(st.want, "\n"))
		}
	}
	last := steps[len(steps)-1].d
	// A restarted steerer changes nothing until told, and nothing when told
	// the same state.
	s2 := newFake(t, k)
	mustSet(t, s2, last)
	if ops := k.take(); len(ops) != 0 {
		t.Errorf("same state after restart: %q", ops)
	}
	if got, err := s2.Kernel(); err != nil || strings.Join(got, "\n") != strings.Join(s2.Dump(), "\n") {
		t.Errorf("kernel %q (%v) != wanted %q", got, err, s2.Dump())
	}
	// Release is "not in the state any more".
	mustSet(t, s2, state())
	if got, want := k.take(), []string{
		"del rule 1040 v4 from all to 10.3.0.2/32 prohibit proto 77",
		"del rule 1040 v6 from all to fd00:3::2/128 prohibit proto 77",
		"del rule 1050 v4 from all to 10.4.0.2/32 lookup 2100 proto 77",
		"del route table 2100 10.4.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("release:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := s2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if len(k.routes) != 0 || len(k.rules) != 1 || k.rules[0].Priority != 1045 {
		t.Errorf("after cleanup: routes %v rules %v", k.routes, k.rules)
	}
}

// reachable reports whether the fake kernel routes dst through mobiked's
// band: the first rule of ours matching it decides (a prohibit: no; a
// lookup of table 2100: only with a host route there; none: main's).
func (f *fakeKernel) reachable(dst netip.Addr) bool {
	rules := slices.Clone(f.rules)
	slices.SortStableFunc(rules, func(a, b netlink.Rule) int { return a.Priority - b.Priority })
	for _, r := range rules {
		if r.Protocol != 77 || r.Dst == nil || !r.Dst.Contains(dst.AsSlice()) {
			continue
		}
		if r.Table == 0 {
			return false
		}
		return slices.ContainsFunc(f.routes, func(x netlink.Route) bool {
			return x.Table == r.Table && pfx(x.Dst) == netip.PrefixFrom(dst, dst.BitLen()).String()
		})
	}
	return true
}

// A remote move is make-before-break at every step: whichever kernel change
// a crash stops it after, one of the peer's addresses stays reachable (the
// new one is allowed before the old one is prohibited), and the restarted
// daemon's first Set repairs the half-applied state. The test hook stops an
// apply after a number of kernel changes.
func TestCrashMidRemoteMoveRepaired(t *testing.T) {
	before := state(grp("p", la, r1, 2, gwa, r2))
	after := state(grp("p", lb, r2, 3, gwb, r1))
	k := &fakeKernel{}
	s := newFake(t, k)
	mustSet(t, s, before)
	k.take()
	mustSet(t, s, after)
	total := len(k.take()) // route, peer rule, prohibit lifted, prohibit laid, peer rule, route
	if total != 6 {
		t.Fatalf("a remote move takes %d kernel changes, want 6", total)
	}
	for n := 1; n < total; n++ {
		t.Run(fmt.Sprintf("after %d", n), func(t *testing.T) {
			k := &fakeKernel{}
			s := newFake(t, k)
			mustSet(t, s, before)
			k.take()
			type crash struct{}
			o, _ := Options{FaultAfterOps: s.ops + n, Fault: func() { panic(crash{}) }}.withDefaults()
			s.o = o
			func() {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(crash); !ok {
							panic(r)
						}
					}
				}()
				_, _ = s.Set(after)
				t.Fatal("the fault hook did not fire")
			}()
			if len(k.ops) != n {
				t.Fatalf("crashed after %d changes, want %d: %q", len(k.ops), n, k.ops)
			}
			if !k.reachable(r1) && !k.reachable(r2) {
				t.Fatalf("both peer addresses unreachable after %q", k.ops)
			}
			k.take()
			// The restarted daemon's first state (the SA did not move: it
			// is still on r1) replaces the half-applied one.
			s2 := newFake(t, k)
			mustSet(t, s2, before)
			got, _ := s2.Kernel()
			if strings.Join(got, "\n") != strings.Join(s2.Dump(), "\n") {
				t.Fatalf("not repaired:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(s2.Dump(), "\n"))
			}
			if !k.reachable(r1) || k.reachable(r2) {
				t.Fatalf("repaired state: r1 reachable %t, r2 %t", k.reachable(r1), k.reachable(r2))
			}
		})
	}
}

// A remote move whose new path cannot be put in place lays no new prohibit:
// when the new address's prohibit cannot be lifted, or its route cannot be
// added, the old address stays allowed (one of the peer's addresses stays
// reachable), the group is reported failed, and another group is applied.
func TestRemoteMoveNotBrokenOnError(t *testing.T) {
	r3, r4 := netip.MustParseAddr("10.5.0.2"), netip.MustParseAddr("10.6.0.2")
	before := state(grp("p", la, r1, 2, gwa, r2), grp("q", la, r3, 2, gwa))
	after := state(grp("p", lb, r2, 3, gwb, r1), grp("q", la, r3, 2, gwa, r4))
	for _, tc := range []struct {
		name string
		k    *fakeKernel
	}{
		{"prohibit not lifted", &fakeKernel{failRuleDel: 1040}},
		{"route not added", &fakeKernel{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.k
			fail := k.failRuleDel
			k.failRuleDel = 0
			s := newFake(t, k)
			mustSet(t, s, before)
			k.failRuleDel = fail
			if fail == 0 {
				k.failRoute = "10.4.0.2/32"
			}
			failed, err := s.Set(after)
			if err == nil || strings.Join(failed, ",") != "p" {
				t.Fatalf("failed %v err %v, want group p failed", failed, err)
			}
			if k.reachable(r2) && fail != 0 {
				t.Fatalf("r2 reachable although its prohibit stayed")
			}
			if !k.reachable(r1) {
				t.Fatalf("the old address was prohibited although the new path is not in place; ops %q", k.ops)
			}
			if k.reachable(r4) {
				t.Fatalf("group q's new prohibit was not laid; ops %q", k.ops)
			}
		})
	}
}

// Errors are reported per steering group; other groups are applied.
func TestSetPerGroupErrors(t *testing.T) {
	k := &fakeKernel{failRoute: "10.5.0.2/32"}
	s := newFake(t, k)
	d := state(
		grp("bad", la, netip.MustParseAddr("10.5.0.2"), 2, gwa),
		grp("good", lb, r1, 3, gwb, r2),
		grp("invalid", la, netip.MustParseAddr("fd00::1"), 2, gwa),
		grp("nolink", la, netip.MustParseAddr("10.6.0.2"), 0, gwa),
		grp("v6hop", la, netip.MustParseAddr("10.7.0.2"), 2, netip.MustParseAddr("fe80::1")),
	)
	failed, err := s.Set(d)
	if err == nil || strings.Join(failed, ",") != "bad,invalid,nolink,v6hop" {
		t.Fatalf("failed %v err %v", failed, err)
	}
	if !slices.ContainsFunc(k.routes, func(r netlink.Route) bool { return pfx(r.Dst) == "10.3.0.2/32" }) {
		t.Error("the good group was not applied")
	}
}

// Run applies the latest submitted state, skipping superseded ones, and
// reports each application.
func TestRunAppliesLatest(t *testing.T) {
	k := &fakeKernel{}
	s := newFake(t, k)
	s.Submit(mobike.ActRouting{Gen: 1, State: state(grp("p", la, r1, 2, gwa))})
	s.Submit(mobike.ActRouting{Gen: 2, State: state(grp("p", lb, r1, 3, gwb))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	ev := (<-s.Events()).(mobike.EvRoutingApplied)
	if ev.Gen != 2 || ev.Err != nil || len(ev.Failed) != 0 {
		t.Errorf("event %+v, want gen 2 applied", ev)
	}
	if !slices.ContainsFunc(k.routes, func(r netlink.Route) bool { return pfx(r.Dst) == "10.3.0.2/32" && r.LinkIndex == 3 }) {
		t.Errorf("gen 2 not in the kernel: %v", k.routes)
	}
	cancel()
	<-done
	if _, open := <-s.Events(); open {
		t.Error("events not closed")
	}
}
