package monitor

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/mobiked/mobiked/mobike"
)

// Kernel constants used by the classifier. They are spelled out here (values
// from linux/if.h, linux/if_addr.h, linux/rtnetlink.h) so that Build stays a
// pure function that compiles and is tested on any platform.
const (
	iffUp       = 0x1
	iffLoopback = 0x8
	iffRunning  = 0x40

	ifaFTemporary  = 0x01 // IPv6 only; the same bit is IFA_F_SECONDARY for IPv4
	ifaFOptimistic = 0x04
	ifaFDADFailed  = 0x08
	ifaFDeprecated = 0x20
	ifaFTentative  = 0x40

	rtnUnicast = 1

	// TableCharon is charon's routing table (charon.routing_table).
	TableCharon = 220
	tableLocal  = 255
	tableUnspec = 0
)

// RawLink is one link as read from the kernel, before classification.
type RawLink struct {
	Index     int
	Name      string
	Type      string // netlink kind: "device", "veth", "tuntap", "gre", "wwan", ...
	EncapType string // hardware type: "ether", "loopback", "none", "ppp", ...
	RawFlags  uint32 // IFF_* flags
	DevType   string // DEVTYPE from /sys/class/net/NAME/uevent ("wlan", "wwan"), if read
	Wireless  bool   // /sys/class/net/NAME/wireless or phy80211 exists
}

// RawAddr is one address as read from the kernel.
type RawAddr struct {
	Prefix  netip.Prefix
	LinkIdx int
	Flags   uint32 // IFA_F_* flags
}

// RawRoute is one route as read from the kernel. Routes with several next hops
// carry them in Nexthops (LinkIdx and Gw are then usually zero).
type RawRoute struct {
	Table    int
	Type     int          // RTN_* route type
	Dst      netip.Prefix // invalid (zero) or bits 0 means default
	Src      netip.Addr
	Gw       netip.Addr
	LinkIdx  int
	Priority int
	Nexthops []RawNexthop
}

// RawNexthop is one next hop of a multipath route.
type RawNexthop struct {
	LinkIdx int
	Gw      netip.Addr
}

// Raw is one full read of the kernel's links, addresses and routes.
type Raw struct {
	Links  []RawLink
	Addrs  []RawAddr
	Routes []RawRoute
}

// Rules say what Build leaves out besides what must never be an uplink.
type Rules struct {
	// IgnoreTables are routing tables whose default routes are not gateways of
	// an uplink (for example the tables mobiked itself owns). Charon's table
	// 220 and the local table are always ignored.
	IgnoreTables []int
	// IgnoreLinks are interface names that are never uplinks. Charon's
	// kernel-libipsec TUN "ipsec0" is always ignored.
	IgnoreLinks []string
}

// neverUplinkKinds are netlink link kinds that are tunnels or overlays: IKE
// must never treat them as an uplink (the IPsec tunnel itself would otherwise
// be offered as a path for the tunnel).
var neverUplinkKinds = map[string]bool{
	"tuntap": true, "tun": true, "tap": true,
	"xfrm": true, "vti": true, "vti6": true,
	"gre": true, "gretap": true, "ip6gre": true, "ip6gretap": true, "erspan": true, "ip6erspan": true,
	"ipip": true, "sit": true, "ip6tnl": true,
	"vxlan": true, "geneve": true, "bareudp": true, "gtp": true, "wireguard": true,
	"vrf": true,
}

// neverUplinkEncaps are hardware types of tunnels and loopback.
var neverUplinkEncaps = map[string]bool{
	"loopback": true, "ipip": true, "tunnel6": true, "sit": true, "gre": true, "ip6gre": true, "void": true,
}

// alwaysIgnoredLinks are names ignored whatever the configuration says.
var alwaysIgnoredLinks = []string{"ipsec0"}

// NeverUplink reports whether a link must never be an uplink: loopback,
// charon's TUN, tunnels and overlays, and links named in rules.
func NeverUplink(l RawLink, r Rules) bool {
	if l.RawFlags&iffLoopback != 0 || neverUplinkKinds[l.Type] || neverUplinkEncaps[l.EncapType] {
		return true
	}
	return slices.Contains(alwaysIgnoredLinks, l.Name) || slices.Contains(r.IgnoreLinks, l.Name)
}

// LinkKind detects the uplink kind from what the kernel says about a link:
// the uevent DEVTYPE, the wireless sysfs directories, the link kind and the
// hardware type.
func LinkKind(l RawLink) mobike.UplinkKind {
	switch {
	case l.DevType == "wlan" || l.Wireless:
		return mobike.KindWLAN
	case l.DevType == "wwan" || l.Type == "wwan" || l.EncapType == "rawip":
		return mobike.KindWWAN
	case l.EncapType == "ether":
		return mobike.KindEthernet
	}
	return mobike.KindUnknown
}

// addrFlags maps kernel IFA_F_* flags to the flags that matter for an
// available address. An optimistic address (RFC 4429) counts as not
// tentative: RFC 4621 §2 explicitly allows it.
func addrFlags(a netip.Addr, f uint32) mobike.AddrFlags {
	var out mobike.AddrFlags
	if !a.Is6() {
		return out
	}
	if f&ifaFTentative != 0 && f&ifaFOptimistic == 0 {
		out |= mobike.AddrTentative
	}
	if f&ifaFDADFailed != 0 {
		out |= mobike.AddrDADFailed
	}
	if f&ifaFDeprecated != 0 {
		out |= mobike.AddrDeprecated
	}
	if f&ifaFTemporary != 0 {
		out |= mobike.AddrTemporary
	}
	return out
}

// scopeOK reports whether an address can ever be an available address in the
// sense of RFC 4621 §2: a global unicast or unique local address, not
// link-local, loopback, multicast or unspecified.
func scopeOK(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast()
}

// Available reports whether an address in a NetState is an available address
// (RFC 4621 §2): Build already removed what has the wrong scope, this checks
// that its assignment is complete (not tentative, DAD did not fail).
func Available(a mobike.Address) bool {
	return a.Flags&(mobike.AddrTentative|mobike.AddrDADFailed) == 0
}

// Build turns one read of the kernel state into a sorted NetState: it drops
// links that must never be an uplink with their addresses and routes,
// addresses with a scope that can never be available, charon's virtual IPs,
// and default routes of ignored tables. Tentative and DAD-failed IPv6
// addresses stay, with their flags (see Available), so that the end of DAD is
// visible as a flags change. Build never modifies raw.
func Build(raw Raw, r Rules) mobike.NetState {
	links := make([]mobike.Link, 0, len(raw.Links))
	kept := make(map[int]bool, len(raw.Links))
	ignored := make(map[int]bool)
	for _, l := range raw.Links {
		if l.Index <= 0 || kept[l.Index] || ignored[l.Index] {
			continue
		}
		if NeverUplink(l, r) {
			ignored[l.Index] = true
			continue
		}
		kept[l.Index] = true
		links = append(links, mobike.Link{
			Index: l.Index,
			Name:  l.Name,
			Kind:  LinkKind(l),
			Up:    l.RawFlags&iffUp != 0 && l.RawFlags&iffRunning != 0,
		})
	}
	// A link seen twice with different attributes keeps the first; the
	// lists are then still sorted and unique.
	slices.SortFunc(links, func(a, b mobike.Link) int { return cmp.Compare(a.Index, b.Index) })

	vips := virtualIPs(raw.Routes)
	addrs := make([]mobike.Address, 0, len(raw.Addrs))
	for _, a := range raw.Addrs {
		if !a.Prefix.IsValid() || !kept[a.LinkIdx] {
			continue
		}
		p := netip.PrefixFrom(a.Prefix.Addr().Unmap(), a.Prefix.Bits())
		if !p.IsValid() {
			p = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
		}
		if !scopeOK(p.Addr()) {
			continue
		}
		if vips[p.Addr()] && p.IsSingleIP() {
			continue
		}
		addrs = append(addrs, mobike.Address{Prefix: p, LinkIdx: a.LinkIdx, Flags: addrFlags(p.Addr(), a.Flags)})
	}
	slices.SortFunc(addrs, compareAddress)
	addrs = slices.CompactFunc(addrs, func(a, b mobike.Address) bool { return compareAddress(a, b) == 0 })

	skip := func(table int) bool {
		return table == TableCharon || table == tableLocal || slices.Contains(r.IgnoreTables, table)
	}
	var gws []mobike.Gateway
	for _, rt := range raw.Routes {
		if rt.Type != rtnUnicast || skip(rt.Table) || !isDefault(rt.Dst) {
			continue
		}
		add := func(idx int, via netip.Addr) {
			if !kept[idx] {
				return
			}
			via = via.Unmap()
			if via.IsValid() && via.IsUnspecified() {
				via = netip.Addr{}
			}
			gws = append(gws, mobike.Gateway{LinkIdx: idx, Via: via, Metric: rt.Priority, Table: rt.Table})
		}
		if len(rt.Nexthops) == 0 {
			add(rt.LinkIdx, rt.Gw)
		}
		for _, nh := range rt.Nexthops {
			add(nh.LinkIdx, nh.Gw)
		}
	}
	slices.SortFunc(gws, compareGateway)
	gws = slices.Compact(gws)

	return mobike.NetState{Links: links, Addrs: addrs, Gateways: gws}
}

// virtualIPs returns the source addresses of charon's table 220 routes: with
// virtual IPs charon installs its routes with the virtual IP as source. Build
// drops such an address only when it is a host address (/32, /128), the way
// charon installs a virtual IP: without a virtual IP the source of a table
// 220 route is a real local address inside the local traffic selector (often
// the uplink address itself), which must stay.
func virtualIPs(routes []RawRoute) map[netip.Addr]bool {
	var m map[netip.Addr]bool
	for _, rt := range routes {
		if rt.Table != TableCharon || !rt.Src.IsValid() {
			continue
		}
		if m == nil {
			m = make(map[netip.Addr]bool)
		}
		m[rt.Src.Unmap()] = true
	}
	return m
}

func isDefault(p netip.Prefix) bool { return !p.IsValid() || p.Bits() == 0 }

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	if a.Is6() {
		return 6
	}
	return 0
}

func compareAddress(a, b mobike.Address) int {
	return cmp.Or(
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(a.LinkIdx, b.LinkIdx),
		cmp.Compare(a.Flags, b.Flags),
	)
}

// compareGateway orders gateways by link, family, metric (as NetState
// documents), then table and next hop so that the order is total.
func compareGateway(a, b mobike.Gateway) int {
	return cmp.Or(
		cmp.Compare(a.LinkIdx, b.LinkIdx),
		cmp.Compare(family(a.Via), family(b.Via)),
		cmp.Compare(a.Metric, b.Metric),
		cmp.Compare(a.Table, b.Table),
		a.Via.Compare(b.Via),
	)
}
