package steer

import (
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
	return fmt.Sprintf("%d from %s to %s %s proto %d", r.Priority, pfx(r.Src), pfx(r.Dst), act, r.Protocol)
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
	for i, x := range f.rules {
		if x.Priority == r.Priority && pfx(x.Src) == pfx(r.Src) && pfx(x.Dst) == pfx(r.Dst) && x.Table == r.Table && x.Protocol == r.Protocol {
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
	if f.find(r) >= 0 {
		return unix.EEXIST
	}
	f.routes = append(f.routes, *r)
	f.ops = append(f.ops, "add route "+routeLine(r))
	return nil
}

func (f *fakeKernel) RouteReplace(r *netlink.Route) error {
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

func TestApplyOrder(t *testing.T) {
	k := &fakeKernel{rules: []netlink.Rule{
		// Foreign rules inside the band (no protocol 77) stay untouched.
		{Priority: 1045, Dst: &net.IPNet{IP: net.IPv4(192, 0, 2, 1).To4(), Mask: net.CIDRMask(32, 32)}},
	}}
	s := newFake(t, k)
	v6 := netip.MustParseAddr("fd00:3::2")
	steps := []struct {
		name string
		act  mobike.ActSteer
		want []string
	}{
		{"first", mobike.ActSteer{Peer: "p", Pair: mobike.Pair{Local: la, Remote: r1}, LinkIdx: 2, Nexthop: gwa, Prohibit: []netip.Addr{r2, v6}}, []string{
			"add route table 2100 10.3.0.2/32 via 10.1.0.1 dev 2 src 10.1.0.2",
			"add rule 1040 from all to 10.4.0.2/32 prohibit proto 77",
			"add rule 1040 from all to fd00:3::2/128 prohibit proto 77",
			"add rule 1050 from all to 10.3.0.2/32 lookup 2100 proto 77",
		}},
		{"same again", mobike.ActSteer{Peer: "p", Pair: mobike.Pair{Local: la, Remote: r1}, LinkIdx: 2, Nexthop: gwa, Prohibit: []netip.Addr{v6, r2}}, nil},
		{"local move: one atomic replace", mobike.ActSteer{Peer: "p", Pair: mobike.Pair{Local: lb, Remote: r1}, LinkIdx: 3, Nexthop: gwb, Prohibit: []netip.Addr{r2, v6}}, []string{
			"replace route table 2100 10.3.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
		}},
		{"remote move: make before break", mobike.ActSteer{Peer: "p", Pair: mobike.Pair{Local: lb, Remote: r2}, LinkIdx: 3, Nexthop: gwb, Prohibit: []netip.Addr{r1, v6}}, []string{
			"add route table 2100 10.4.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
			"add rule 1040 from all to 10.3.0.2/32 prohibit proto 77",
			"add rule 1050 from all to 10.4.0.2/32 lookup 2100 proto 77",
			"del rule 1040 from all to 10.4.0.2/32 prohibit proto 77",
			"del rule 1050 from all to 10.3.0.2/32 lookup 2100 proto 77",
			"del route table 2100 10.3.0.2/32 via 10.2.0.1 dev 3 src 10.2.0.2",
		}},
	}
	for _, st := range steps {
		if err := s.Apply(st.act); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := k.take()
		if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", st.name, strings.Join(got, "\n"), strings.Join(st.want, "\n"))
		}
	}
	// A restart adopts the state and changes nothing.
	s2 := newFake(t, k)
	if err := s2.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if ops := k.take(); len(ops) != 0 {
		t.Errorf("reconcile after restart: %q", ops)
	}
	if err := s2.Release("p"); err != nil { // s2 never applied "p": adopted state stays
		t.Fatal(err)
	}
	if ops := k.take(); len(ops) != 0 {
		t.Errorf("release of an unknown group: %q", ops)
	}
	if err := s.Release("p"); err != nil {
		t.Fatal(err)
	}
	if len(k.routes) != 0 || len(k.rules) != 1 || k.rules[0].Priority != 1045 {
		t.Errorf("after release: routes %v rules %v", k.routes, k.rules)
	}
}

func TestApplyInvalid(t *testing.T) {
	s := newFake(t, &fakeKernel{})
	for _, a := range []mobike.ActSteer{
		{Pair: mobike.Pair{Local: la}, LinkIdx: 2},
		{Pair: mobike.Pair{Local: la, Remote: netip.MustParseAddr("fd00::1")}, LinkIdx: 2},
		{Pair: mobike.Pair{Local: la, Remote: r1}},
		{Pair: mobike.Pair{Local: la, Remote: r1}, LinkIdx: 2, Nexthop: netip.MustParseAddr("fe80::1")},
	} {
		if err := s.Apply(a); err == nil {
			t.Errorf("Apply(%+v): want an error", a)
		}
	}
}

// countingKernel counts the dumps the steerer makes.
type countingKernel struct {
	*fakeKernel
	dumps int
}

func (c *countingKernel) RuleList(f int) ([]netlink.Rule, error) {
	c.dumps++
	return c.fakeKernel.RuleList(f)
}

// Many steering groups towards one gateway steering onto the same pair (a
// host with 1 000 SAs to one gateway) cost one kernel sync, not one each; a
// group asking for something new still syncs.
func TestApplyManyGroupsSamePair(t *testing.T) {
	k := &countingKernel{fakeKernel: &fakeKernel{}}
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newWith(o, k)
	if err != nil {
		t.Fatal(err)
	}
	act := mobike.ActSteer{Pair: mobike.Pair{Local: lb, Remote: r1}, LinkIdx: 3, Nexthop: gwb, Prohibit: []netip.Addr{r2}}
	start := k.dumps
	for i := 0; i < 1000; i++ {
		act.Peer = fmt.Sprintf("s%d", i)
		if err := s.Apply(act); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.dumps - start; n != 1 {
		t.Fatalf("1000 identical steers made %d kernel syncs, want 1", n)
	}
	if ops := k.take(); len(ops) != 3 {
		t.Fatalf("kernel changes %v, want the route and two rules once", ops)
	}
	// A group asking for something new syncs (and changes the kernel).
	act.Peer = "other"
	act.Pair = mobike.Pair{Local: la, Remote: netip.MustParseAddr("10.5.0.2")}
	act.LinkIdx, act.Nexthop, act.Prohibit = 2, gwa, nil
	if err := s.Apply(act); err != nil {
		t.Fatal(err)
	}
	if k.dumps-start != 2 {
		t.Fatalf("a changed steer did not sync")
	}
	if ops := k.take(); len(ops) == 0 {
		t.Fatal("a changed steer changed nothing in the kernel")
	}
}
