package monitor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// errInterrupted marks a dump the kernel flagged as inconsistent.
var errInterrupted = netlink.ErrDumpInterrupted

// netlinkSource is the real source: rtnetlink subscriptions and dumps in one
// network namespace.
type netlinkSource struct {
	ns     *netns.NsHandle // nil: current namespace
	h      *netlink.Handle
	sysfs  SysfsKind
	force  bool // SO_RCVBUFFORCE is allowed
	rcvbuf int
}

func newNetlinkSource(ns *netns.NsHandle, sysfs SysfsKind, rcvbuf int) (*netlinkSource, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if ns != nil {
		h, err = netlink.NewHandleAt(*ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &netlinkSource{ns: ns, h: h, sysfs: sysfs, force: os.Geteuid() == 0, rcvbuf: rcvbuf}, nil
}

func (s *netlinkSource) close() { s.h.Close() }

func (s *netlinkSource) subscribe(hint func(), fail func(error)) (func(), error) {
	done := make(chan struct{})
	var stopped atomic.Bool
	cb := func(err error) {
		if !stopped.Load() {
			fail(err)
		}
	}
	var wg sync.WaitGroup
	stop := func() {
		stopped.Store(true)
		close(done)
		wg.Wait()
	}
	// drain forwards every update as a hint; the library closes the channel
	// when its socket fails (after the error callback) or is closed by done.
	drain := func(n func() bool) {
		wg.Go(func() {
			for n() {
				hint()
			}
			cb(ErrSubscriptionClosed)
		})
	}
	ns := s.ns

	linkCh := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{
		Namespace: ns, ErrorCallback: cb, ListExisting: true,
		ReceiveBufferSize: s.rcvbuf, ReceiveBufferForceSize: s.force,
	}); err != nil {
		stop()
		return nil, fmt.Errorf("subscribe links: %w", err)
	}
	drain(func() bool { _, ok := <-linkCh; return ok })

	addrCh := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{
		Namespace: ns, ErrorCallback: cb, ListExisting: true,
		ReceiveBufferSize: s.rcvbuf, ReceiveBufferForceSize: s.force,
	}); err != nil {
		stop()
		return nil, fmt.Errorf("subscribe addresses: %w", err)
	}
	drain(func() bool { _, ok := <-addrCh; return ok })

	routeCh := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{
		Namespace: ns, ErrorCallback: cb, ListExisting: true,
		ReceiveBufferSize: s.rcvbuf, ReceiveBufferForceSize: s.force,
	}); err != nil {
		stop()
		return nil, fmt.Errorf("subscribe routes: %w", err)
	}
	drain(func() bool { _, ok := <-routeCh; return ok })
	return stop, nil
}

// dump reads links, addresses and the routes Build needs. An interrupted
// dump is read to the end and reported with errInterrupted, so the caller can
// repeat it.
func (s *netlinkSource) dump() (Raw, error) {
	var interrupted bool
	check := func(what string, err error) error {
		if err == nil {
			return nil
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			interrupted = true
			return nil
		}
		return fmt.Errorf("dump %s: %w", what, err)
	}

	links, err := s.h.LinkList()
	if err := check("links", err); err != nil {
		return Raw{}, err
	}
	addrs, err := s.h.AddrList(nil, netlink.FAMILY_ALL)
	if err := check("addresses", err); err != nil {
		return Raw{}, err
	}
	var routes []netlink.Route
	err = s.h.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE,
		func(r netlink.Route) bool {
			if keepRoute(r) {
				routes = append(routes, r)
			}
			return true
		})
	if err := check("routes", err); err != nil {
		return Raw{}, err
	}
	raw := rawFromNetlink(links, addrs, routes, s.sysfs)
	if interrupted {
		return raw, errInterrupted
	}
	return raw, nil
}

// keepRoute keeps only what Build looks at: default routes and the sources
// of charon's routes. The rest (one local route per address, prefix routes)
// would only cost memory.
func keepRoute(r netlink.Route) bool {
	return r.Table == TableCharon && r.Src != nil || r.Dst == nil || ones(r.Dst) == 0
}

// rawFromNetlink converts what the netlink library returned into Raw. It
// takes the library's structs as they come (any IP or mask length, nil
// entries): a malformed one is skipped, never a panic (FuzzNetlinkToState).
func rawFromNetlink(links []netlink.Link, addrs []netlink.Addr, routes []netlink.Route, sysfs SysfsKind) Raw {
	raw := Raw{Links: make([]RawLink, 0, len(links)), Addrs: make([]RawAddr, 0, len(addrs))}
	for _, l := range links {
		if l == nil || l.Attrs() == nil {
			continue
		}
		raw.Links = append(raw.Links, convertLink(l, sysfs))
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		p, ok := prefixFromIPNet(a.IPNet)
		if !ok {
			continue
		}
		raw.Addrs = append(raw.Addrs, RawAddr{Prefix: p, LinkIdx: a.LinkIndex, Flags: uint32(a.Flags)})
	}
	for _, r := range routes {
		raw.Routes = append(raw.Routes, convertRoute(r))
	}
	return raw
}

func convertLink(l netlink.Link, sysfs SysfsKind) RawLink {
	a := l.Attrs()
	rl := RawLink{Index: a.Index, Name: a.Name, Type: l.Type(), EncapType: a.EncapType, RawFlags: a.RawFlags}
	if !NeverUplink(rl, Rules{}) && sysfs != nil {
		if dt, wl, ok := sysfs(a.Name, a.Index); ok {
			rl.DevType, rl.Wireless = dt, wl
		}
	}
	return rl
}

func convertRoute(r netlink.Route) RawRoute {
	rr := RawRoute{Table: r.Table, Type: r.Type, LinkIdx: r.LinkIndex, Priority: r.Priority}
	if r.Dst != nil {
		rr.Dst, _ = prefixFromIPNet(r.Dst)
	}
	rr.Src = addrFromIP(r.Src)
	rr.Gw = addrFromIP(r.Gw)
	if r.Via != nil {
		if v, ok := r.Via.(*netlink.Via); ok && !rr.Gw.IsValid() {
			rr.Gw = addrFromIP(v.Addr)
		}
	}
	for _, nh := range r.MultiPath {
		if nh == nil {
			continue
		}
		gw := addrFromIP(nh.Gw)
		if v, ok := nh.Via.(*netlink.Via); ok && !gw.IsValid() {
			gw = addrFromIP(v.Addr)
		}
		rr.Nexthops = append(rr.Nexthops, RawNexthop{LinkIdx: nh.LinkIndex, Gw: gw})
	}
	return rr
}

func ones(n *net.IPNet) int {
	o, _ := n.Mask.Size()
	return o
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	a := addrFromIP(n.IP)
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	o, bits := n.Mask.Size()
	if bits == 0 { // non-canonical mask
		return netip.Prefix{}, false
	}
	if bits == 128 && a.Is4() {
		o -= 96
	}
	p := netip.PrefixFrom(a, o)
	return p, p.IsValid()
}
