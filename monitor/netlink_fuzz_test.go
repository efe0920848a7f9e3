package monitor

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/mobiked/mobiked/mobike"
)

// netlinkFromBytes decodes fuzz input into what the netlink library hands
// the monitor, malformed as it may be: IPs and masks of any length and
// content (non-canonical masks, 4-octet masks on 16-octet IPs), nil
// prefixes and next hops, next hops by Via, links without a name.
func netlinkFromBytes(data []byte) ([]netlink.Link, []netlink.Addr, []netlink.Route) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	bytesN := func(max int) []byte {
		n := int(next()) % (max + 1)
		b := make([]byte, n)
		for i := range b {
			b[i] = next()
		}
		return b
	}
	ip := func() net.IP {
		switch next() % 4 {
		case 0:
			return nil
		case 1:
			return net.IP{10, next() % 4, 0, next() % 4}
		case 2:
			return net.IP{0x20, 1, 0x0d, 0xb8, 15: next() % 4}
		}
		return bytesN(17)
	}
	ipnet := func() *net.IPNet {
		switch next() % 4 {
		case 0:
			return nil
		case 1:
			return &net.IPNet{IP: ip(), Mask: net.CIDRMask(int(next()%33), 32)}
		case 2:
			return &net.IPNet{IP: ip(), Mask: net.CIDRMask(int(next()%129), 128)}
		}
		return &net.IPNet{IP: ip(), Mask: bytesN(17)}
	}
	via := func() netlink.Destination {
		if next()%3 == 0 {
			return &netlink.Via{AddrFamily: int(next()), Addr: ip()}
		}
		return nil
	}
	names := []string{"eth0", "wlan0", "lo", "ipsec0", "", "wwan0"}
	types := []string{"device", "veth", "tuntap", "xfrm", "vti", "wwan", ""}
	var links []netlink.Link
	var addrs []netlink.Addr
	var routes []netlink.Route
	for len(data) > 0 {
		switch next() % 4 {
		case 0:
			la := netlink.NewLinkAttrs()
			la.Index, la.Name = int(next()%8)-1, names[next()%byte(len(names))]
			la.EncapType, la.RawFlags = []string{"ether", "loopback", "none", ""}[next()%4], uint32(next())
			links = append(links, &netlink.GenericLink{LinkAttrs: la, LinkType: types[next()%byte(len(types))]})
		case 1:
			links = append(links, nil)
		case 2:
			addrs = append(addrs, netlink.Addr{IPNet: ipnet(), LinkIndex: int(next() % 8), Flags: int(next())})
		case 3:
			r := netlink.Route{Table: []int{0, 220, 254, 255, 2100}[next()%5], Type: int(next() % 3), LinkIndex: int(next() % 8),
				Priority: int(next()), Dst: ipnet(), Src: ip(), Gw: ip(), Via: via()}
			for range next() % 3 {
				if next()%4 == 0 {
					r.MultiPath = append(r.MultiPath, nil)
					continue
				}
				r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: int(next() % 8), Gw: ip(), Via: via()})
			}
			routes = append(routes, r)
		}
	}
	return links, addrs, routes
}

// FuzzNetlinkToState: whatever the netlink library returns, converting it,
// building the state and diffing it against the previous one never panics,
// and the state keeps its invariants.
func FuzzNetlinkToState(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 3, 0, 0, 0, 0, 0, 2, 1, 1, 3, 1, 1, 24, 3, 0, 1, 2, 1, 3, 0, 1, 1, 2, 0, 1})
	f.Add([]byte{2, 3, 3, 5, 1, 2, 3, 4, 5, 9, 255, 255, 255, 255, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		sysfs := func(name string, _ int) (string, bool, bool) { return "", name == "wlan0", true }
		rules := Rules{IgnoreTables: []int{2100}}
		half := len(data) / 2
		l0, a0, r0 := netlinkFromBytes(data[:half])
		l1, a1, r1 := netlinkFromBytes(data)
		for _, r := range r1 {
			keepRoute(r)
		}
		prev := Build(rawFromNetlink(l0, a0, r0, sysfs), rules)
		cur := Build(rawFromNetlink(l1, a1, r1, sysfs), rules)
		checkInvariants(t, cur)
		_ = Diff(prev, cur)
		if d := Diff(cur, Clone(cur)); len(d) != 0 {
			t.Fatalf("Diff(s, s) = %v", d)
		}
		_ = Diff(mobike.NetState{}, cur)
	})
}
