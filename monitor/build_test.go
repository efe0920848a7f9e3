package monitor

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mobiked/mobiked/mobike"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

const upRunning = iffUp | iffRunning

// lab is a raw state like mn's in the lab: two ethernet uplinks, loopback,
// charon's ipsec0 with a virtual IP and table 220 routes.
func lab() Raw {
	return Raw{
		Links: []RawLink{
			{Index: 3, Name: "eth1", Type: "veth", EncapType: "ether", RawFlags: upRunning},
			{Index: 1, Name: "lo", Type: "device", EncapType: "loopback", RawFlags: upRunning | iffLoopback},
			{Index: 2, Name: "eth0", Type: "veth", EncapType: "ether", RawFlags: upRunning},
			{Index: 9, Name: "ipsec0", Type: "tuntap", EncapType: "none", RawFlags: upRunning},
		},
		Addrs: []RawAddr{
			{Prefix: mustPrefix("127.0.0.1/8"), LinkIdx: 1},
			{Prefix: mustPrefix("::1/128"), LinkIdx: 1},
			{Prefix: mustPrefix("10.2.0.2/24"), LinkIdx: 3},
			{Prefix: mustPrefix("10.1.0.2/24"), LinkIdx: 2},
			{Prefix: mustPrefix("fe80::1/64"), LinkIdx: 2},
			{Prefix: mustPrefix("10.50.0.1/32"), LinkIdx: 9},
		},
		Routes: []RawRoute{
			{Table: 254, Type: rtnUnicast, Gw: mustAddr("10.2.0.1"), LinkIdx: 3, Priority: 200},
			{Table: 254, Type: rtnUnicast, Dst: mustPrefix("0.0.0.0/0"), Gw: mustAddr("10.1.0.1"), LinkIdx: 2, Priority: 100},
			{Table: 220, Type: rtnUnicast, Dst: mustPrefix("10.9.0.0/24"), Src: mustAddr("10.50.0.1"), LinkIdx: 9},
			{Table: 220, Type: rtnUnicast, Dst: mustPrefix("0.0.0.0/0"), LinkIdx: 9},
		},
	}
}

func labState() mobike.NetState {
	return mobike.NetState{
		Links: []mobike.Link{
			{Index: 2, Name: "eth0", Kind: mobike.KindEthernet, Up: true},
			{Index: 3, Name: "eth1", Kind: mobike.KindEthernet, Up: true},
		},
		Addrs: []mobike.Address{
			{Prefix: mustPrefix("10.1.0.2/24"), LinkIdx: 2},
			{Prefix: mustPrefix("10.2.0.2/24"), LinkIdx: 3},
		},
		Gateways: []mobike.Gateway{
			{LinkIdx: 2, Via: mustAddr("10.1.0.1"), Metric: 100, Table: 254},
			{LinkIdx: 3, Via: mustAddr("10.2.0.1"), Metric: 200, Table: 254},
		},
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name  string
		raw   func() Raw
		rules Rules
		want  func() mobike.NetState
	}{
		{
			name: "lab",
			raw:  lab,
			want: labState,
		},
		{
			name: "virtual IP on an uplink is dropped",
			raw: func() Raw {
				r := lab()
				r.Addrs = append(r.Addrs, RawAddr{Prefix: mustPrefix("10.50.0.1/32"), LinkIdx: 2})
				return r
			},
			want: labState,
		},
		{
			name: "table 220 source that is a real prefix stays",
			raw: func() Raw {
				r := lab()
				r.Routes = append(r.Routes, RawRoute{Table: 220, Type: rtnUnicast, Dst: mustPrefix("10.9.0.0/24"), Src: mustAddr("10.1.0.2"), LinkIdx: 2})
				return r
			},
			want: labState,
		},
		{
			name: "tunnels and named links are never uplinks",
			raw: func() Raw {
				r := lab()
				for i, typ := range []string{"xfrm", "vti", "gre", "tuntap", "wireguard", "ipip", "ip6tnl"} {
					idx := 20 + i
					r.Links = append(r.Links, RawLink{Index: idx, Name: typ + "0", Type: typ, EncapType: "none", RawFlags: upRunning})
					r.Addrs = append(r.Addrs, RawAddr{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 60, byte(i), 1}), 24), LinkIdx: idx})
					r.Routes = append(r.Routes, RawRoute{Table: 254, Type: rtnUnicast, LinkIdx: idx})
				}
				r.Links = append(r.Links, RawLink{Index: 30, Name: "mgmt", Type: "veth", EncapType: "ether", RawFlags: upRunning})
				r.Addrs = append(r.Addrs, RawAddr{Prefix: mustPrefix("10.70.0.2/24"), LinkIdx: 30})
				return r
			},
			rules: Rules{IgnoreLinks: []string{"mgmt"}},
			want:  labState,
		},
		{
			name: "ignored tables, non-unicast and non-default routes",
			raw: func() Raw {
				r := lab()
				r.Routes = append(r.Routes,
					RawRoute{Table: 2100, Type: rtnUnicast, Gw: mustAddr("10.2.0.1"), LinkIdx: 3},
					RawRoute{Table: 255, Type: rtnUnicast, LinkIdx: 3},
					RawRoute{Table: 254, Type: 7 /* RTN_PROHIBIT */},
					RawRoute{Table: 254, Type: rtnUnicast, Dst: mustPrefix("10.3.0.2/32"), Gw: mustAddr("10.2.0.1"), LinkIdx: 3},
					RawRoute{Table: 254, Type: rtnUnicast, Gw: mustAddr("10.9.9.9"), LinkIdx: 77}, // unknown link
				)
				return r
			},
			rules: Rules{IgnoreTables: []int{2100}},
			want:  labState,
		},
		{
			name: "other tables, multipath, on-link, IPv6",
			raw: func() Raw {
				r := lab()
				r.Routes = append(r.Routes,
					RawRoute{Table: 101, Type: rtnUnicast, Gw: mustAddr("10.1.0.1"), LinkIdx: 2},
					RawRoute{Table: 254, Type: rtnUnicast, Dst: mustPrefix("::/0"), Priority: 1024, Nexthops: []RawNexthop{
						{LinkIdx: 3, Gw: mustAddr("fe80::1")}, {LinkIdx: 2, Gw: mustAddr("fe80::2")},
					}},
					RawRoute{Table: 254, Type: rtnUnicast, Gw: mustAddr("0.0.0.0"), LinkIdx: 3, Priority: 300},
				)
				return r
			},
			want: func() mobike.NetState {
				s := labState()
				s.Gateways = []mobike.Gateway{
					{LinkIdx: 2, Via: mustAddr("10.1.0.1"), Metric: 0, Table: 101},
					{LinkIdx: 2, Via: mustAddr("10.1.0.1"), Metric: 100, Table: 254},
					{LinkIdx: 2, Via: mustAddr("fe80::2"), Metric: 1024, Table: 254},
					{LinkIdx: 3, Metric: 300, Table: 254},
					{LinkIdx: 3, Via: mustAddr("10.2.0.1"), Metric: 200, Table: 254},
					{LinkIdx: 3, Via: mustAddr("fe80::1"), Metric: 1024, Table: 254},
				}
				return s
			},
		},
		{
			name: "address scopes and IPv6 flags",
			raw: func() Raw {
				r := lab()
				r.Addrs = append(r.Addrs,
					RawAddr{Prefix: mustPrefix("169.254.1.1/16"), LinkIdx: 2},
					RawAddr{Prefix: mustPrefix("224.0.0.1/32"), LinkIdx: 2},
					RawAddr{Prefix: mustPrefix("fd00::2/64"), LinkIdx: 2, Flags: ifaFTentative},
					RawAddr{Prefix: mustPrefix("2001:db8::2/64"), LinkIdx: 2, Flags: ifaFTentative | ifaFOptimistic | ifaFTemporary},
					RawAddr{Prefix: mustPrefix("2001:db8::3/64"), LinkIdx: 3, Flags: ifaFTentative | ifaFDADFailed},
					RawAddr{Prefix: mustPrefix("2001:db8::4/64"), LinkIdx: 3, Flags: ifaFDeprecated},
					RawAddr{Prefix: mustPrefix("10.2.0.3/24"), LinkIdx: 3, Flags: ifaFTemporary /* IFA_F_SECONDARY */},
				)
				return r
			},
			want: func() mobike.NetState {
				s := labState()
				s.Addrs = []mobike.Address{
					{Prefix: mustPrefix("10.1.0.2/24"), LinkIdx: 2},
					{Prefix: mustPrefix("10.2.0.2/24"), LinkIdx: 3},
					{Prefix: mustPrefix("10.2.0.3/24"), LinkIdx: 3},
					{Prefix: mustPrefix("2001:db8::2/64"), LinkIdx: 2, Flags: mobike.AddrTemporary},
					{Prefix: mustPrefix("2001:db8::3/64"), LinkIdx: 3, Flags: mobike.AddrTentative | mobike.AddrDADFailed},
					{Prefix: mustPrefix("2001:db8::4/64"), LinkIdx: 3, Flags: mobike.AddrDeprecated},
					{Prefix: mustPrefix("fd00::2/64"), LinkIdx: 2, Flags: mobike.AddrTentative},
				}
				return s
			},
		},
		{
			name: "link state and kinds",
			raw: func() Raw {
				return Raw{Links: []RawLink{
					{Index: 2, Name: "eth0", Type: "device", EncapType: "ether", RawFlags: iffUp},
					{Index: 3, Name: "wlan0", Type: "device", EncapType: "ether", RawFlags: upRunning, DevType: "wlan"},
					{Index: 4, Name: "wlp1", Type: "device", EncapType: "ether", RawFlags: upRunning, Wireless: true},
					{Index: 5, Name: "wwan0", Type: "device", EncapType: "none", RawFlags: upRunning, DevType: "wwan"},
					{Index: 6, Name: "mhi0", Type: "wwan", EncapType: "none"},
					{Index: 7, Name: "ppp0", Type: "device", EncapType: "ppp", RawFlags: upRunning},
					{Index: 7, Name: "dup", Type: "device", EncapType: "ether"},
					{Index: 0, Name: "bad", Type: "device", EncapType: "ether"},
				}}
			},
			want: func() mobike.NetState {
				return mobike.NetState{Links: []mobike.Link{
					{Index: 2, Name: "eth0", Kind: mobike.KindEthernet, Up: false},
					{Index: 3, Name: "wlan0", Kind: mobike.KindWLAN, Up: true},
					{Index: 4, Name: "wlp1", Kind: mobike.KindWLAN, Up: true},
					{Index: 5, Name: "wwan0", Kind: mobike.KindWWAN, Up: true},
					{Index: 6, Name: "mhi0", Kind: mobike.KindWWAN},
					{Index: 7, Name: "ppp0", Kind: mobike.KindUnknown, Up: true},
				}, Addrs: []mobike.Address{}}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw()
			before := cloneRaw(raw)
			got := Build(raw, tc.rules)
			want := tc.want()
			if !Equal(got, want) {
				t.Errorf("Build:\n got %s\nwant %s", render(got), render(want))
			}
			if !rawEqual(raw, before) {
				t.Errorf("Build modified its input")
			}
			checkInvariants(t, got)
		})
	}
}

func TestAvailable(t *testing.T) {
	for _, tc := range []struct {
		flags mobike.AddrFlags
		want  bool
	}{
		{0, true},
		{mobike.AddrDeprecated, true},
		{mobike.AddrTemporary, true},
		{mobike.AddrTentative, false},
		{mobike.AddrDADFailed, false},
		{mobike.AddrTentative | mobike.AddrDADFailed, false},
	} {
		if got := Available(mobike.Address{Flags: tc.flags}); got != tc.want {
			t.Errorf("Available(flags %b) = %v, want %v", tc.flags, got, tc.want)
		}
	}
}

// checkInvariants checks what every NetState must satisfy.
func checkInvariants(t *testing.T, s mobike.NetState) {
	t.Helper()
	if !slices.IsSortedFunc(s.Links, func(a, b mobike.Link) int { return a.Index - b.Index }) {
		t.Errorf("links not sorted: %s", render(s))
	}
	if !slices.IsSortedFunc(s.Addrs, compareAddress) {
		t.Errorf("addresses not sorted: %s", render(s))
	}
	if !slices.IsSortedFunc(s.Gateways, compareGateway) {
		t.Errorf("gateways not sorted: %s", render(s))
	}
	links := map[int]bool{}
	for i, l := range s.Links {
		if i > 0 && s.Links[i-1].Index == l.Index {
			t.Errorf("duplicate link %d", l.Index)
		}
		if l.Index <= 0 || l.Name == "ipsec0" {
			t.Errorf("link %+v must not be in a NetState", l)
		}
		links[l.Index] = true
	}
	for i, a := range s.Addrs {
		if i > 0 && compareAddress(s.Addrs[i-1], a) == 0 {
			t.Errorf("duplicate address %v", a)
		}
		if !links[a.LinkIdx] {
			t.Errorf("address %v on a link not in the state", a)
		}
		if !a.Prefix.IsValid() || !a.Prefix.Addr().IsGlobalUnicast() || a.Prefix.Addr().Is4In6() {
			t.Errorf("address %v can never be available", a)
		}
		if a.Prefix.Addr().Is4() && a.Flags != 0 {
			t.Errorf("IPv4 address %v with IPv6 flags", a)
		}
	}
	for i, g := range s.Gateways {
		if i > 0 && s.Gateways[i-1] == g {
			t.Errorf("duplicate gateway %v", g)
		}
		if !links[g.LinkIdx] {
			t.Errorf("gateway %v on a link not in the state", g)
		}
		if g.Table == TableCharon || g.Table == tableLocal {
			t.Errorf("gateway %v from an ignored table", g)
		}
		if g.Via.Is4In6() || (g.Via.IsValid() && g.Via.IsUnspecified()) {
			t.Errorf("gateway %v has a non-canonical next hop", g)
		}
	}
}

func cloneRaw(r Raw) Raw {
	c := Raw{Links: slices.Clone(r.Links), Addrs: slices.Clone(r.Addrs), Routes: slices.Clone(r.Routes)}
	for i := range c.Routes {
		c.Routes[i].Nexthops = slices.Clone(c.Routes[i].Nexthops)
	}
	return c
}

func rawEqual(a, b Raw) bool {
	return slices.Equal(a.Links, b.Links) && slices.Equal(a.Addrs, b.Addrs) &&
		slices.EqualFunc(a.Routes, b.Routes, func(x, y RawRoute) bool {
			return x.Table == y.Table && x.Type == y.Type && x.Dst == y.Dst && x.Src == y.Src && x.Gw == y.Gw &&
				x.LinkIdx == y.LinkIdx && x.Priority == y.Priority && slices.Equal(x.Nexthops, y.Nexthops)
		})
}

func render(s mobike.NetState) string { return "\n" + Format(s) }

func netipPrefix4(a, b, c, d byte, bits int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{a, b, c, d}), bits)
}
