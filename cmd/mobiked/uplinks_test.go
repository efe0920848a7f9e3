package main

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mobiked/mobiked/mobike"
)

func TestUplinksFor(t *testing.T) {
	a4 := mobike.Address{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2}
	a6 := mobike.Address{Prefix: netip.MustParsePrefix("fd00:1::2/64"), LinkIdx: 2}
	b4 := mobike.Address{Prefix: netip.MustParsePrefix("10.2.0.2/24"), LinkIdx: 3}
	ppp := mobike.Address{Prefix: netip.MustParsePrefix("100.64.0.9/32"), LinkIdx: 4}
	tent := mobike.Address{Prefix: netip.MustParsePrefix("fd00:2::2/64"), LinkIdx: 3, Flags: mobike.AddrTentative}
	gw := func(idx int, via string) mobike.Gateway {
		g := mobike.Gateway{LinkIdx: idx}
		if via != "" {
			g.Via = netip.MustParseAddr(via)
		}
		return g
	}
	links := []mobike.Link{{Index: 2, Name: "eth0", Up: true}, {Index: 3, Name: "eth1", Up: true}, {Index: 4, Name: "wwan0", Up: true}}
	for _, tc := range []struct {
		name string
		ns   mobike.NetState
		want string
	}{
		{"both families with gateways",
			mobike.NetState{Links: links[:1], Addrs: []mobike.Address{a4, a6}, Gateways: []mobike.Gateway{gw(2, "10.1.0.1"), gw(2, "fd00:1::1")}},
			"[{eth0 2 [10.1.0.2 fd00:1::2] [10.1.0.1 fd00:1::1]}]"},
		{"family without a default route is left out",
			mobike.NetState{Links: links[:1], Addrs: []mobike.Address{a4, a6}, Gateways: []mobike.Gateway{gw(2, "fd00:1::1")}},
			"[{eth0 2 [fd00:1::2] [fd00:1::1]}]"},
		{"no default route at all: no uplink (link just came back)",
			mobike.NetState{Links: links[:1], Addrs: []mobike.Address{a4, a6}},
			"[]"},
		{"link down: no uplink",
			mobike.NetState{Links: []mobike.Link{{Index: 2, Name: "eth0"}}, Addrs: []mobike.Address{a4}, Gateways: []mobike.Gateway{gw(2, "10.1.0.1")}},
			"[]"},
		{"point-to-point default route without a gateway",
			mobike.NetState{Links: links, Addrs: []mobike.Address{ppp, b4, tent}, Gateways: []mobike.Gateway{gw(4, ""), gw(3, "10.2.0.1")}},
			"[{eth1 3 [10.2.0.2] [10.2.0.1]} {wwan0 4 [100.64.0.9] []}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fmt.Sprint(uplinksFor(tc.ns))
			if got == "[]" && len(uplinksFor(tc.ns)) == 0 {
				got = "[]"
			}
			if got != tc.want {
				t.Fatalf("uplinksFor = %s, want %s", got, tc.want)
			}
		})
	}
}
