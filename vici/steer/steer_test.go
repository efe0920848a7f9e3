package steer

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mobiked/mobiked/mobike"
)

const nsPrefix = "hvst-"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("steer tests need root (they create a network namespace)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("steer tests need iproute2: %v", err)
	}
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// newNS creates a namespace with two veth "uplinks" a0 (10.1.0.2) and b0
// (10.2.0.2), charon's rule 220 and some foreign entries inside mobiked's
// band that must survive everything.
func newNS(t *testing.T) (string, *netlink.Handle) {
	requireRoot(t)
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	ns := fmt.Sprintf("%s%d", nsPrefix, os.Getpid())
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, c := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "a0", "type", "veth", "peer", "name", "a1"},
		{"link", "add", "b0", "type", "veth", "peer", "name", "b1"},
		{"link", "add", "c0", "type", "veth", "peer", "name", "c1"},
		{"link", "set", "a0", "up"}, {"link", "set", "a1", "up"},
		{"link", "set", "b0", "up"}, {"link", "set", "b1", "up"},
		{"link", "set", "c0", "up"}, {"link", "set", "c1", "up"},
		{"addr", "add", "192.168.77.1/24", "dev", "c0"}, // a LAN behind the host
		{"addr", "add", "10.1.0.2/24", "dev", "a0"},
		{"addr", "add", "10.2.0.2/24", "dev", "b0"},
		{"addr", "add", "fd00:1::2/64", "dev", "a0", "nodad"},
		{"route", "add", "default", "via", "10.1.0.1", "metric", "100"},
		{"rule", "add", "pref", "220", "not", "fwmark", "0x42", "lookup", "220"},
		{"route", "add", "10.9.0.0/24", "dev", "a0", "table", "220"},
		{"rule", "add", "pref", "1045", "to", "192.0.2.1", "prohibit"},
		{"rule", "add", "pref", "1050", "to", "192.0.2.2", "lookup", "2100"},
		{"route", "add", "192.0.2.2", "via", "10.2.0.1", "table", "2100"},
		{"route", "add", "198.18.0.0/15", "via", "10.1.0.1", "table", "2101"},
	} {
		sh(t, append([]string{"ip", "-n", ns}, c...)...)
	}
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return ns, nh
}

func snapshot(t *testing.T, ns string) string {
	return sh(t, "ip", "-n", ns, "rule") + sh(t, "ip", "-n", ns, "-6", "rule") +
		sh(t, "ip", "-n", ns, "route", "show", "table", "all") + sh(t, "ip", "-n", ns, "-6", "route", "show", "table", "all")
}

func routeGet(t *testing.T, ns, dst string) string {
	out, err := exec.Command("ip", "-n", ns, "route", "get", dst).CombinedOutput()
	if err != nil {
		return "error: " + strings.TrimSpace(string(out))
	}
	return strings.TrimSpace(string(out))
}

func linkIdx(t *testing.T, h *netlink.Handle, name string) int {
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

var (
	la  = netip.MustParseAddr("10.1.0.2")
	lb  = netip.MustParseAddr("10.2.0.2")
	r1  = netip.MustParseAddr("10.3.0.2")
	r2  = netip.MustParseAddr("10.4.0.2")
	gwa = netip.MustParseAddr("10.1.0.1")
	gwb = netip.MustParseAddr("10.2.0.1")
)

func TestSteerKernel(t *testing.T) {
	ns, h := newNS(t)
	before := snapshot(t, ns)
	ia, ib := linkIdx(t, h, "a0"), linkIdx(t, h, "b0")

	s, err := New(Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != before {
		t.Fatalf("New changed the kernel:\n%s", got)
	}
	ups := []mobike.DesiredUplink{
		{Name: "b0", LinkIdx: ib, Local: []netip.Addr{lb}, Gateways: []netip.Addr{gwb}},
		{Name: "a0", LinkIdx: ia, Local: []netip.Addr{la, netip.MustParseAddr("fd00:1::2")}, Gateways: []netip.Addr{gwa}},
	}
	set := func(groups ...mobike.DesiredGroup) {
		t.Helper()
		if failed, err := s.Set(mobike.Desired{Uplinks: ups, Groups: groups}); err != nil || len(failed) > 0 {
			t.Fatalf("set: %v %v", failed, err)
		}
	}
	set()
	// Source rules send each address out of its uplink...
	if got := sh(t, "ip", "-n", ns, "route", "get", "198.51.100.7", "from", "10.2.0.2"); !strings.Contains(got, "via 10.2.0.1 dev b0") {
		t.Errorf("source rule: route get from 10.2.0.2 = %q, want via 10.2.0.1 dev b0", got)
	}
	// ...but never ahead of a more specific route of main (a LAN).
	if got := sh(t, "ip", "-n", ns, "route", "get", "192.168.77.5", "from", "10.2.0.2"); !strings.Contains(got, "dev c0") {
		t.Errorf("LAN from an uplink address: route get = %q, want main's route dev c0", got)
	}
	if got := sh(t, "ip", "-n", ns, "-6", "route", "show", "table", "2101"); !strings.Contains(got, "default dev a0") {
		t.Errorf("a0 has no IPv6 gateway: want an on-link IPv6 default in its table, got %q", got)
	}

	steps := []struct {
		g           mobike.DesiredGroup
		wantR1      string // substring of `ip route get 10.3.0.2`
		wantR2      string
		wantEntries int
	}{
		{mobike.DesiredGroup{Name: "lab", Pair: mobike.Pair{Local: la, Remote: r1}, LinkIdx: ia, Nexthop: gwa, Prohibit: []netip.Addr{r2}},
			"via 10.1.0.1 dev a0 table 2100 src 10.1.0.2", "error", 3},
		{mobike.DesiredGroup{Name: "lab", Pair: mobike.Pair{Local: lb, Remote: r1}, LinkIdx: ib, Nexthop: gwb, Prohibit: []netip.Addr{r2}},
			"via 10.2.0.1 dev b0 table 2100 src 10.2.0.2", "error", 3},
		{mobike.DesiredGroup{Name: "lab", Pair: mobike.Pair{Local: lb, Remote: r2}, LinkIdx: ib, Nexthop: gwb, Prohibit: []netip.Addr{r1}},
			"error", "via 10.2.0.1 dev b0 table 2100 src 10.2.0.2", 3},
		{mobike.DesiredGroup{Name: "lab", Pair: mobike.Pair{Local: la, Remote: r2}, LinkIdx: ia},
			"via 10.1.0.1 dev a0 src 10.1.0.2", "dev a0 table 2100 src 10.1.0.2", 2},
	}
	for i, st := range steps {
		set(st.g)
		if got := routeGet(t, ns, "10.3.0.2"); !strings.Contains(got, st.wantR1) {
			t.Errorf("step %d: route get 10.3.0.2 = %q, want %q", i, got, st.wantR1)
		}
		if got := routeGet(t, ns, "10.4.0.2"); !strings.Contains(got, st.wantR2) {
			t.Errorf("step %d: route get 10.4.0.2 = %q, want %q", i, got, st.wantR2)
		}
		// 2 IPv4 source rules, the IPv4 main rule, peer and prohibit rules.
		if n := strings.Count(sh(t, "ip", "-n", ns, "rule"), "proto 77"); n != 3+st.wantEntries-1 {
			t.Errorf("step %d: %d IPv4 rules of ours, want %d", i, n, 3+st.wantEntries-1)
		}
		if strings.Count(sh(t, "ip", "-n", ns, "route", "show", "table", "2100", "proto", "77"), "\n") != 1 {
			t.Errorf("step %d: want exactly one host route in table 2100", i)
		}
	}
	// Wanted state as text (sorted).
	want := []string{
		"route table 2100 10.4.0.2/32 dev " + fmt.Sprint(ia) + " src 10.1.0.2",
		"route table 2101 0.0.0.0/0 via 10.1.0.1 dev " + fmt.Sprint(ia),
		"route table 2101 ::/0 dev " + fmt.Sprint(ia),
		"route table 2102 0.0.0.0/0 via 10.2.0.1 dev " + fmt.Sprint(ib),
		"rule 1000 ipv4: from all to all lookup 254 suppress_prefixlength 0",
		"rule 1000 ipv6: from all to all lookup 254 suppress_prefixlength 0",
		"rule 1001 ipv4: from 10.1.0.2/32 to all lookup 2101",
		"rule 1001 ipv4: from 10.2.0.2/32 to all lookup 2102",
		"rule 1001 ipv6: from fd00:1::2/128 to all lookup 2101",
		"rule 1050 ipv4: from all to 10.4.0.2/32 lookup 2100",
	}
	if got := s.Dump(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("dump:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, err := s.Kernel(); err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("kernel (%v):\n%s\nwant:\n%s", err, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	steered := snapshot(t, ns)

	// A restarted mobiked changes nothing: not at start, not when told the
	// same state.
	s2, err := New(Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Set(mobike.Desired{Uplinks: ups, Groups: []mobike.DesiredGroup{steps[3].g}}); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != steered {
		t.Errorf("same state after restart changed the kernel:\n%s\nwant:\n%s", got, steered)
	}
	// Reconcile repairs what someone else removed or added in our space.
	sh(t, "ip", "-n", ns, "route", "del", "10.4.0.2", "table", "2100")
	sh(t, "ip", "-n", ns, "rule", "add", "pref", "1041", "to", "10.5.0.2", "prohibit", "protocol", "77")
	if err := s2.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != steered {
		t.Errorf("reconcile did not repair:\n%s\nwant:\n%s", got, steered)
	}

	if err := s2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != before {
		t.Errorf("after cleanup:\n%s\nwant (before):\n%s", got, before)
	}
	// Cleanup is idempotent.
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != before {
		t.Errorf("after second cleanup:\n%s\nwant:\n%s", got, before)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"table 220", Options{Table: 220}},
		{"main", Options{Table: 254}},
		{"before 220", Options{SourcePrio: 100, ProhibitPrio: 110, PeerPrio: 120, PrioMax: 130}},
		{"main at 220", Options{MainPrio: 220, SourcePrio: 300, ProhibitPrio: 310, PeerPrio: 320, PrioMax: 330}},
		{"order", Options{SourcePrio: 1050, ProhibitPrio: 1040}},
		{"overlap", Options{Table: 2105}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// A foreign route where mobiked wants one of its own is reported, never
// overwritten or removed.
func TestForeignRouteConflict(t *testing.T) {
	ns, h := newNS(t)
	sh(t, "ip", "-n", ns, "route", "add", "default", "via", "10.2.0.1", "table", "2101")
	before := snapshot(t, ns)
	s, err := New(Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Set(mobike.Desired{Uplinks: []mobike.DesiredUplink{{Name: "a0", LinkIdx: linkIdx(t, h, "a0"), Local: []netip.Addr{la}, Gateways: []netip.Addr{gwa}}}})
	if err == nil || !strings.Contains(err.Error(), "route add") {
		t.Fatalf("uplink table over a foreign default route: err = %v, want a route add error", err)
	}
	if got := sh(t, "ip", "-n", ns, "route", "show", "table", "2101"); !strings.Contains(got, "default via 10.2.0.1 dev b0") {
		t.Errorf("foreign route changed: %q", got)
	}
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, ns); got != before {
		t.Errorf("after cleanup:\n%s\nwant:\n%s", got, before)
	}
}
