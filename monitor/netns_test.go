package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/mobiked/mobiked/mobike"
)

// Root tests: they build network namespaces named hn-* (this package's
// prefix), connect them with a veth pair and watch one of them from the
// test process, which stays in its own namespace.

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab2 creates namespaces hn-TAG-x and hn-TAG-y joined by veth vx <-> vy
// (both down), removing leftovers of an earlier run first.
func lab2(t *testing.T, tag string) (x, y string) {
	t.Helper()
	x, y = "hn-"+tag+"-x", "hn-"+tag+"-y"
	for _, ns := range []string{x, y} {
		_ = exec.Command("ip", "netns", "del", ns).Run() // leftover of a killed run
	}
	for _, ns := range []string{x, y} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", x, "link", "add", "vx", "type", "veth", "peer", "name", "vy", "netns", y)
	ipCmd(t, "-n", x, "link", "set", "lo", "up")
	return x, y
}

// watch starts a monitor on namespace ns.
func watch(t *testing.T, ns string, opts Options) *Monitor {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("netns %s: %v", ns, err)
	}
	opts.NetNS = &h
	opts.Debounce = 20 * time.Millisecond
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		h.Close()
	})
	return m
}

// waitFor reads events until cond holds for one, and returns the union of
// the reasons seen on the way. It fails after a deadline: the kernel
// notifies within milliseconds, the deadline only bounds a broken test.
func waitFor(t *testing.T, m *Monitor, what string, cond func(mobike.NetState) bool) []mobike.NetReason {
	t.Helper()
	var seen []mobike.NetReason
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				t.Fatalf("waiting for %s: events closed", what)
			}
			ns := ev.(mobike.EvNetState)
			for _, r := range ns.Reasons {
				if !slices.Contains(seen, r) {
					seen = append(seen, r)
				}
			}
			if cond(ns.State) {
				return seen
			}
		case <-deadline:
			t.Fatalf("waiting for %s: timeout; snapshot:%s", what, render(m.Snapshot()))
		}
	}
}

func linkByName(s mobike.NetState, name string) (mobike.Link, bool) {
	for _, l := range s.Links {
		if l.Name == name {
			return l, true
		}
	}
	return mobike.Link{}, false
}

func addrOf(s mobike.NetState, p string) (mobike.Address, bool) {
	want := netip.MustParsePrefix(p)
	for _, a := range s.Addrs {
		if a.Prefix == want {
			return a, true
		}
	}
	return mobike.Address{}, false
}

func wantReason(t *testing.T, seen []mobike.NetReason, r mobike.NetReason) {
	t.Helper()
	if !slices.Contains(seen, r) {
		t.Errorf("reasons %v lack %v", seen, r)
	}
}

func TestNetnsLinkAddrRoute(t *testing.T) {
	skipUnlessRoot(t)
	x, y := lab2(t, "lar")
	m := watch(t, x, Options{})

	var idx int
	seen := waitFor(t, m, "vx listed", func(s mobike.NetState) bool {
		l, ok := linkByName(s, "vx")
		idx = l.Index
		return ok && !l.Up
	})
	wantReason(t, seen, mobike.NetResync)
	if l, _ := linkByName(m.Snapshot(), "vx"); l.Kind != mobike.KindEthernet {
		t.Errorf("veth kind = %v, want ethernet", l.Kind)
	}
	if _, ok := linkByName(m.Snapshot(), "lo"); ok {
		t.Errorf("loopback in state")
	}

	ipCmd(t, "-n", x, "link", "set", "vx", "up")
	ipCmd(t, "-n", y, "link", "set", "vy", "up")
	seen = waitFor(t, m, "vx up", func(s mobike.NetState) bool { l, _ := linkByName(s, "vx"); return l.Up })
	wantReason(t, seen, mobike.NetLinkUp)

	ipCmd(t, "-n", x, "addr", "add", "10.77.0.2/24", "dev", "vx")
	seen = waitFor(t, m, "address added", func(s mobike.NetState) bool { _, ok := addrOf(s, "10.77.0.2/24"); return ok })
	wantReason(t, seen, mobike.NetAddrAdded)

	ipCmd(t, "-n", x, "route", "add", "default", "via", "10.77.0.1", "metric", "100")
	gw := mobike.Gateway{LinkIdx: idx, Via: netip.MustParseAddr("10.77.0.1"), Metric: 100, Table: 254}
	seen = waitFor(t, m, "default route", func(s mobike.NetState) bool { return slices.Equal(s.Gateways, []mobike.Gateway{gw}) })
	wantReason(t, seen, mobike.NetGatewayChanged)

	ipCmd(t, "-n", x, "route", "replace", "default", "via", "10.77.0.3", "metric", "100")
	gw.Via = netip.MustParseAddr("10.77.0.3")
	seen = waitFor(t, m, "default route changed", func(s mobike.NetState) bool { return slices.Equal(s.Gateways, []mobike.Gateway{gw}) })
	wantReason(t, seen, mobike.NetGatewayChanged)

	// Carrier loss: the peer goes down, vx stays administratively up.
	ipCmd(t, "-n", y, "link", "set", "vy", "down")
	seen = waitFor(t, m, "vx down", func(s mobike.NetState) bool { l, ok := linkByName(s, "vx"); return ok && !l.Up })
	wantReason(t, seen, mobike.NetLinkDown)

	ipCmd(t, "-n", x, "addr", "del", "10.77.0.2/24", "dev", "vx")
	seen = waitFor(t, m, "address removed", func(s mobike.NetState) bool {
		_, ok := addrOf(s, "10.77.0.2/24")
		return !ok && len(s.Gateways) == 0 // the default route goes with the address
	})
	wantReason(t, seen, mobike.NetAddrRemoved)
	wantReason(t, seen, mobike.NetGatewayChanged)

	ipCmd(t, "-n", x, "link", "del", "vx")
	seen = waitFor(t, m, "vx removed", func(s mobike.NetState) bool { _, ok := linkByName(s, "vx"); return !ok })
	wantReason(t, seen, mobike.NetLinkRemoved)
}

func TestNetnsIgnoreRules(t *testing.T) {
	skipUnlessRoot(t)
	x, y := lab2(t, "ign")
	// Fast DAD would race the monitor; keep the kernel default (1 s) in x.
	ipCmd(t, "-n", x, "link", "set", "vx", "up")
	ipCmd(t, "-n", y, "link", "set", "vy", "up")
	ipCmd(t, "-n", x, "addr", "add", "10.77.0.2/24", "dev", "vx")
	ipCmd(t, "-n", x, "route", "add", "default", "via", "10.77.0.1")
	// charon's kernel-libipsec TUN with a virtual IP, and another tun.
	ipCmd(t, "-n", x, "tuntap", "add", "dev", "ipsec0", "mode", "tun")
	ipCmd(t, "-n", x, "tuntap", "add", "dev", "tun7", "mode", "tun")
	for _, dev := range []string{"ipsec0", "tun7"} {
		ipCmd(t, "-n", x, "link", "set", dev, "up")
	}
	ipCmd(t, "-n", x, "addr", "add", "10.50.0.9/32", "dev", "ipsec0")
	ipCmd(t, "-n", x, "addr", "add", "10.51.0.1/24", "dev", "tun7")
	ipCmd(t, "-n", x, "route", "add", "default", "dev", "ipsec0", "metric", "5")
	// A virtual IP installed on the uplink, as charon does without
	// kernel-libipsec, with its table 220 route.
	ipCmd(t, "-n", x, "addr", "add", "10.50.0.5/32", "dev", "vx")
	ipCmd(t, "-n", x, "route", "add", "10.9.0.0/24", "via", "10.77.0.1", "dev", "vx", "src", "10.50.0.5", "table", "220")
	// A table 220 route sourced from the uplink address itself (no virtual
	// IP): that address must stay.
	ipCmd(t, "-n", x, "route", "add", "10.8.0.0/24", "via", "10.77.0.1", "dev", "vx", "src", "10.77.0.2", "table", "220")
	// Default routes in charon's table, in an ignored table and in one
	// that counts.
	ipCmd(t, "-n", x, "route", "add", "default", "via", "10.77.0.1", "dev", "vx", "table", "220")
	ipCmd(t, "-n", x, "route", "add", "default", "via", "10.77.0.1", "dev", "vx", "table", "2100")
	ipCmd(t, "-n", x, "route", "add", "default", "via", "10.77.0.1", "dev", "vx", "table", "101", "metric", "7")
	// The address that vx will fail DAD for: y has it already.
	ipCmd(t, "-n", y, "addr", "add", "2001:db8::7/64", "dev", "vy", "nodad")

	m := watch(t, x, Options{IgnoreTables: []int{2100}})
	var idx int
	waitFor(t, m, "vx with its address", func(s mobike.NetState) bool {
		l, ok := linkByName(s, "vx")
		idx = l.Index
		_, ok2 := addrOf(s, "10.77.0.2/24")
		return ok && ok2 && len(s.Gateways) == 2
	})

	ipCmd(t, "-n", x, "addr", "add", "2001:db8::2/64", "dev", "vx")
	ipCmd(t, "-n", x, "addr", "add", "2001:db8::7/64", "dev", "vx")
	waitFor(t, m, "tentative address", func(s mobike.NetState) bool { _, ok := addrOf(s, "2001:db8::2/64"); return ok })
	if a, _ := addrOf(m.Snapshot(), "2001:db8::2/64"); a.Flags&mobike.AddrTentative == 0 || Available(a) {
		t.Errorf("fresh IPv6 address %+v: want tentative, not available (DAD takes 1 s)", a)
	}

	seen := waitFor(t, m, "DAD over", func(s mobike.NetState) bool {
		a, ok := addrOf(s, "2001:db8::2/64")
		b, ok2 := addrOf(s, "2001:db8::7/64")
		return ok && ok2 && Available(a) && b.Flags&mobike.AddrDADFailed != 0
	})
	wantReason(t, seen, mobike.NetAddrFlagsChanged)

	s := m.Snapshot()
	if a, _ := addrOf(s, "2001:db8::7/64"); Available(a) {
		t.Errorf("duplicate address %+v is available", a)
	}
	if len(s.Links) != 1 || s.Links[0].Name != "vx" {
		t.Errorf("links: want only vx:%s", render(s))
	}
	var got []string
	for _, a := range s.Addrs {
		got = append(got, a.Prefix.String())
		if a.Prefix.Addr().IsLinkLocalUnicast() {
			t.Errorf("link-local address %v in state", a)
		}
	}
	want := []string{"10.77.0.2/24", "2001:db8::2/64", "2001:db8::7/64"}
	if !slices.Equal(got, want) {
		t.Errorf("addresses = %v, want %v (no VIP, no tun, no loopback, no link-local)", got, want)
	}
	// The kernel had a link-local address on vx all along.
	if out := ipCmd(t, "-n", x, "-6", "addr", "show", "dev", "vx", "scope", "link"); !strings.Contains(out, "fe80::") {
		t.Errorf("vx has no link-local address, the test proves nothing: %s", out)
	}
	wantGW := []mobike.Gateway{
		{LinkIdx: idx, Via: netip.MustParseAddr("10.77.0.1"), Metric: 0, Table: 254},
		{LinkIdx: idx, Via: netip.MustParseAddr("10.77.0.1"), Metric: 7, Table: 101},
	}
	if !slices.Equal(s.Gateways, wantGW) {
		t.Errorf("gateways:%s", render(s))
	}
}

// ipAddrs returns the addresses `ip -j addr` shows on dev in ns that can be
// available addresses (global scope).
func ipAddrs(t *testing.T, ns, dev string) []netip.Prefix {
	t.Helper()
	var out []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ipCmd(t, "-n", ns, "-j", "addr", "show", "dev", dev)), &out); err != nil {
		t.Fatal(err)
	}
	var ps []netip.Prefix
	for _, l := range out {
		for _, a := range l.AddrInfo {
			p := netip.PrefixFrom(netip.MustParseAddr(a.Local), a.Prefixlen)
			if p.Addr().IsGlobalUnicast() {
				ps = append(ps, p)
			}
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ps
}

func stateAddrs(s mobike.NetState, idx int) []netip.Prefix {
	var ps []netip.Prefix
	for _, a := range s.Addrs {
		if a.LinkIdx == idx {
			ps = append(ps, a.Prefix)
		}
	}
	return ps
}

// heapSampler records the largest heap in use while it runs.
type heapSampler struct {
	max  atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Go(func() {
		tk := time.NewTicker(25 * time.Millisecond)
		defer tk.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.max.Load() {
				h.max.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
		}
	})
	return h
}

func (h *heapSampler) done() uint64 { close(h.stop); h.wg.Wait(); return h.max.Load() }

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

const mib = 1 << 20

func TestNetns10000Addresses(t *testing.T) {
	skipUnlessRoot(t)
	const n = 10000
	x, y := lab2(t, "10k")
	ipCmd(t, "-n", x, "link", "set", "vx", "up")
	ipCmd(t, "-n", y, "link", "set", "vy", "up")
	ipCmd(t, "-n", x, "addr", "add", "10.77.0.2/24", "dev", "vx")

	m := watch(t, x, Options{})
	var idx int
	waitFor(t, m, "vx", func(s mobike.NetState) bool {
		l, ok := linkByName(s, "vx")
		idx = l.Index
		return ok && len(s.Addrs) == 1
	})
	base := heapNow()

	dir := t.TempDir()
	var add, del strings.Builder
	for i := range n {
		fmt.Fprintf(&add, "address add 10.%d.%d.%d/32 dev vx\n", 100+i/65536, i/256%256, i%256)
		fmt.Fprintf(&del, "address del 10.%d.%d.%d/32 dev vx\n", 100+i/65536, i/256%256, i%256)
	}
	addFile, delFile := filepath.Join(dir, "add"), filepath.Join(dir, "del")
	if err := os.WriteFile(addFile, []byte(add.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(delFile, []byte(del.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	sampler := sampleHeap()
	batch := func(file string) time.Duration {
		start := time.Now()
		if out, err := exec.Command("ip", "netns", "exec", x, "ip", "-batch", file).CombinedOutput(); err != nil {
			t.Fatalf("ip -batch %s: %v: %s", file, err, out)
		}
		return time.Since(start)
	}
	matches := func(s mobike.NetState) bool { return slices.Equal(stateAddrs(s, idx), ipAddrs(t, x, "vx")) }

	tAdd := batch(addFile)
	start := time.Now()
	waitFor(t, m, "10000 addresses", func(s mobike.NetState) bool { return len(s.Addrs) == n+1 })
	settleAdd := time.Since(start)
	if s := m.Snapshot(); !matches(s) {
		t.Fatalf("after adding: snapshot has %d addresses on vx, ip -j addr %d", len(stateAddrs(s, idx)), len(ipAddrs(t, x, "vx")))
	}

	tDel := batch(delFile)
	start = time.Now()
	waitFor(t, m, "addresses removed", func(s mobike.NetState) bool { return len(s.Addrs) == 1 })
	settleDel := time.Since(start)
	peak := sampler.done()
	s := m.Snapshot()
	if !matches(s) {
		t.Fatalf("after removing: snapshot%s\nip -j addr: %v", render(s), ipAddrs(t, x, "vx"))
	}
	end := heapNow()
	st := m.Stats()
	t.Logf("ip -batch: add %d addresses %v, delete %v; monitor settled %v / %v after; reads %d (%v), subscriptions %d",
		n, tAdd.Round(time.Millisecond), tDel.Round(time.Millisecond), settleAdd.Round(time.Millisecond), settleDel.Round(time.Millisecond), st.Reads, st.ReadTime.Round(time.Millisecond), st.Resyncs)
	t.Logf("heap in use: before %.1f MiB, peak %.1f MiB, after %.1f MiB", float64(base)/mib, float64(peak)/mib, float64(end)/mib)
	if tAdd+tDel > 10*time.Second {
		t.Logf("warning: the kernel took %v for the batches (target 10 s): the machine is loaded", tAdd+tDel)
	}
	if peak > base+64*mib {
		t.Errorf("peak heap grew by %.1f MiB, want < 64 MiB", float64(peak-base)/mib)
	}
	if end > base+8*mib {
		t.Errorf("heap after the churn grew by %.1f MiB, want < 8 MiB", float64(end-base)/mib)
	}
}

// TestNetnsOverflowResync gives the subscriptions a tiny receive buffer so
// that a burst overflows it (ENOBUFS): the monitor must resubscribe, read
// again and end with the kernel's state.
func TestNetnsOverflowResync(t *testing.T) {
	skipUnlessRoot(t)
	const n = 2000
	x, y := lab2(t, "ovf")
	ipCmd(t, "-n", x, "link", "set", "vx", "up")
	ipCmd(t, "-n", y, "link", "set", "vy", "up")
	m := watch(t, x, Options{receiveBuffer: 1024})
	var idx int
	waitFor(t, m, "vx", func(s mobike.NetState) bool { l, ok := linkByName(s, "vx"); idx = l.Index; return ok })

	var add strings.Builder
	for i := range n {
		fmt.Fprintf(&add, "address add 10.%d.%d.%d/32 dev vx\n", 100+i/65536, i/256%256, i%256)
	}
	file := filepath.Join(t.TempDir(), "add")
	if err := os.WriteFile(file, []byte(add.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", x, "ip", "-batch", file).CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	seen := waitFor(t, m, "all addresses", func(s mobike.NetState) bool { return len(stateAddrs(s, idx)) == n })
	if !slices.Equal(stateAddrs(m.Snapshot(), idx), ipAddrs(t, x, "vx")) {
		t.Errorf("snapshot differs from ip -j addr")
	}
	st := m.Stats()
	t.Logf("subscriptions %d, reads %d, reasons %v", st.Resyncs, st.Reads, seen)
	if st.Resyncs < 2 {
		t.Errorf("%d subscriptions: the burst did not overflow a 1 KiB buffer, or the overflow was not noticed", st.Resyncs)
	}
}

// TestNetnsStopLeavesNoGoroutines checks that Run's subscriptions, drains
// and library goroutines are gone when it returns.
func TestNetnsStopLeavesNoGoroutines(t *testing.T) {
	skipUnlessRoot(t)
	x, _ := lab2(t, "leak")
	h, err := netns.GetFromName(x)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before := runtime.NumGoroutine()
	m, err := New(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	<-m.Events()
	if n := runtime.NumGoroutine(); n < before+6 {
		t.Errorf("only %d goroutines while running: are the subscriptions up?", n-before)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
