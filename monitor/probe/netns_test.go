package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Root-only tests build their own topology of network namespaces whose
// names start with "hp-" (this package's prefix):
//
//	hp-c  c0 10.201.1.2/24 fd00:201:1::2/64 ── r0 10.201.1.1 hp-r
//	      c1 10.201.2.2/24 fd00:201:2::2/64 ── r1 10.201.2.1
//	                                            r2 10.201.3.1 ── s0 10.201.3.2/24 fd00:201:3::2/64 hp-s
//
// hp-c has two default routes (via c0 metric 100, via c1 metric 200), so
// only SO_BINDTODEVICE makes a probe from 10.201.2.2 leave through c1; hp-r
// drops packets that arrive on the wrong uplink for their source, can
// masquerade uplink c1 towards hp-s (NAT) and carries the nftables
// impairments (drop, random loss).

func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, raw sockets); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nftables")
	}
}

type topo struct {
	prefix string
}

func (tp topo) ns(n string) string { return tp.prefix + "-" + n }

func run(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

func (tp topo) in(t testing.TB, ns string, argv ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", tp.ns(ns)}, argv...)...)
}

func (tp topo) cleanup() {
	for _, n := range []string{"c", "r", "s"} {
		exec.Command("ip", "netns", "del", tp.ns(n)).Run()
	}
}

// newTopo builds the topology; prefix must start with "hp".
func newTopo(t testing.TB, prefix string, nat bool) topo {
	t.Helper()
	skipUnlessRoot(t)
	tp := topo{prefix: prefix}
	tp.cleanup() // leftovers of a killed run
	t.Cleanup(tp.cleanup)
	for _, n := range []string{"c", "r", "s"} {
		run(t, "ip", "netns", "add", tp.ns(n))
		tp.in(t, n, "ip", "link", "set", "lo", "up")
		// no DAD on link-local addresses either: neighbour discovery would
		// otherwise hold the first IPv6 probes for seconds
		tp.in(t, n, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	link := func(a, an, b, bn string) {
		run(t, "ip", "link", "add", an, "netns", tp.ns(a), "type", "veth", "peer", "name", bn, "netns", tp.ns(b))
		tp.in(t, a, "ip", "link", "set", an, "up")
		tp.in(t, b, "ip", "link", "set", bn, "up")
	}
	link("c", "c0", "r", "r0")
	link("c", "c1", "r", "r1")
	link("s", "s0", "r", "r2")
	addr := func(ns, dev, a string) {
		args := []string{"ip", "addr", "add", a, "dev", dev}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		tp.in(t, ns, args...)
	}
	addr("c", "c0", "10.201.1.2/24")
	addr("c", "c0", "fd00:201:1::2/64")
	addr("c", "c1", "10.201.2.2/24")
	addr("c", "c1", "fd00:201:2::2/64")
	addr("r", "r0", "10.201.1.1/24")
	addr("r", "r0", "fd00:201:1::1/64")
	addr("r", "r1", "10.201.2.1/24")
	addr("r", "r1", "fd00:201:2::1/64")
	addr("r", "r2", "10.201.3.1/24")
	addr("r", "r2", "fd00:201:3::1/64")
	addr("s", "s0", "10.201.3.2/24")
	addr("s", "s0", "fd00:201:3::2/64")
	tp.in(t, "c", "ip", "route", "add", "default", "via", "10.201.1.1", "dev", "c0", "metric", "100")
	tp.in(t, "c", "ip", "route", "add", "default", "via", "10.201.2.1", "dev", "c1", "metric", "200")
	tp.in(t, "c", "ip", "-6", "route", "add", "default", "via", "fd00:201:1::1", "dev", "c0", "metric", "100")
	tp.in(t, "c", "ip", "-6", "route", "add", "default", "via", "fd00:201:2::1", "dev", "c1", "metric", "200")
	tp.in(t, "s", "ip", "route", "add", "default", "via", "10.201.3.1")
	tp.in(t, "s", "ip", "-6", "route", "add", "default", "via", "fd00:201:3::1")
	tp.in(t, "r", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	rules := `table inet hp {
	chain hpfwd {
		type filter hook forward priority 0; policy accept;
		iifname "r0" ip saddr != 10.201.1.0/24 drop
		iifname "r1" ip saddr != 10.201.2.0/24 drop
		iifname "r0" ip6 saddr != fd00:201:1::/64 drop
		iifname "r1" ip6 saddr != fd00:201:2::/64 drop
	}
	chain impair {
		type filter hook prerouting priority -10; policy accept;
	}
}
`
	if nat {
		rules += `table ip hpnat {
	chain hppost {
		type nat hook postrouting priority 100; policy accept;
		ip saddr 10.201.2.0/24 oifname "r2" masquerade
	}
}
`
	}
	tp.nft(t, rules)
	return tp
}

func (tp topo) nft(t testing.TB, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", tp.ns("r"), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// impair adds a rule to the router's prerouting impairment chain.
func (tp topo) impair(t testing.TB, rule string) {
	t.Helper()
	tp.in(t, "r", "nft", "add rule inet hp impair "+rule)
}

// impairCounters returns the packet counts of the impairment chain's
// counter rules, in rule order.
func (tp topo) impairCounters(t testing.TB) []uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", tp.ns("r"), "nft", "list", "chain", "inet", "hp", "impair").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain: %v: %s", err, out)
	}
	var counts []uint64
	for _, m := range counterRE.FindAllSubmatch(out, -1) {
		n, err := strconv.ParseUint(string(m[1]), 10, 64)
		if err != nil {
			t.Fatalf("counter %q: %v", m[1], err)
		}
		counts = append(counts, n)
	}
	return counts
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes`)

// inNetNS runs fn on a fresh OS thread switched into namespace ns; sockets
// created by fn stay in ns. The thread is discarded afterwards.
func inNetNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (tp topo) hook(ns string) func(func() error) error {
	return func(open func() error) error { return inNetNS(tp.ns(ns), open) }
}

// serveReflector runs a reflector on UDP port 862 in hp-s (IPv4 and IPv6).
func (tp topo) serveReflector(t testing.TB, o ReflectorOptions) *Reflector {
	t.Helper()
	return tp.serveReflectorPort(t, o, 862)
}

func (tp topo) serveReflectorPort(t testing.TB, o ReflectorOptions, port int) *Reflector {
	t.Helper()
	return serveReflectorNS(t, tp.ns("s"), o, port)
}

// serveReflectorNS runs a reflector on UDP port in namespace ns.
func serveReflectorNS(t testing.TB, ns string, o ReflectorOptions, port int) *Reflector {
	t.Helper()
	r, err := NewReflector(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, network := range []string{"udp4", "udp6"} {
		var c net.PacketConn
		err := inNetNS(ns, func() error {
			var err error
			addr := fmt.Sprintf("0.0.0.0:%d", port)
			if network == "udp6" {
				addr = fmt.Sprintf("[::]:%d", port)
				lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
					var serr error
					rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1) })
					return serr
				}}
				c, err = lc.ListenPacket(context.Background(), network, addr)
				return err
			}
			c, err = net.ListenPacket(network, addr)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := r.Serve(ctx, c); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("reflector: %v", err)
			}
		})
		t.Cleanup(func() { c.Close() })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}
