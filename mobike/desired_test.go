package mobike

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/mobiked/mobiked/policy"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestUplinksFor(t *testing.T) {
	a4 := Address{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2}
	a6 := Address{Prefix: netip.MustParsePrefix("fd00:1::2/64"), LinkIdx: 2}
	b4 := Address{Prefix: netip.MustParsePrefix("10.2.0.2/24"), LinkIdx: 3}
	ppp := Address{Prefix: netip.MustParsePrefix("100.64.0.9/32"), LinkIdx: 4}
	tent := Address{Prefix: netip.MustParsePrefix("fd00:2::2/64"), LinkIdx: 3, Flags: AddrTentative}
	gw := func(idx int, via string) Gateway {
		g := Gateway{LinkIdx: idx}
		if via != "" {
			g.Via = netip.MustParseAddr(via)
		}
		return g
	}
	links := []Link{{Index: 2, Name: "eth0", Up: true}, {Index: 3, Name: "eth1", Up: true}, {Index: 4, Name: "wwan0", Up: true}}
	for _, tc := range []struct {
		name string
		pol  policy.Settings
		ns   NetState
		want string
	}{
		{"both families with gateways", policy.Settings{},
			NetState{Links: links[:1], Addrs: []Address{a4, a6}, Gateways: []Gateway{gw(2, "10.1.0.1"), gw(2, "fd00:1::1")}},
			"[{eth0 2 [10.1.0.2 fd00:1::2] [10.1.0.1 fd00:1::1]}]"},
		{"family without a default route is left out", policy.Settings{},
			NetState{Links: links[:1], Addrs: []Address{a4, a6}, Gateways: []Gateway{gw(2, "fd00:1::1")}},
			"[{eth0 2 [fd00:1::2] [fd00:1::1]}]"},
		{"no default route at all: no uplink (link just came back)", policy.Settings{},
			NetState{Links: links[:1], Addrs: []Address{a4, a6}},
			"[]"},
		{"link down: no uplink", policy.Settings{},
			NetState{Links: []Link{{Index: 2, Name: "eth0"}}, Addrs: []Address{a4}, Gateways: []Gateway{gw(2, "10.1.0.1")}},
			"[]"},
		{"point-to-point default route without a gateway", policy.Settings{},
			NetState{Links: links, Addrs: []Address{ppp, b4, tent}, Gateways: []Gateway{gw(4, ""), gw(3, "10.2.0.1")}},
			"[{eth1 3 [10.2.0.2] [10.2.0.1]} {wwan0 4 [100.64.0.9] []}]"},
		{"excluded uplink: no table, no source rule", policy.Settings{Uplinks: []policy.UplinkPolicy{{Name: "eth0", Exclude: true}}},
			NetState{Links: links[:2], Addrs: []Address{a4, b4}, Gateways: []Gateway{gw(2, "10.1.0.1"), gw(3, "10.2.0.1")}},
			"[{eth1 3 [10.2.0.2] [10.2.0.1]}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{Policy: tc.pol})
			c.Step(t0, EvNetState{State: tc.ns})
			got := fmt.Sprint(c.uplinksFor())
			if got != tc.want {
				t.Fatalf("uplinksFor = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestDesiredGolden: two groups (one of two connections sharing the
// gateway, one alone), rendered as text; nothing is emitted before the SA
// list is known.
func TestDesiredGolden(t *testing.T) {
	c := New(Config{Policy: policy.Settings{Conns: []policy.ConnPolicy{
		{Name: "office", ExtraPeers: []netip.Addr{ip("10.4.0.2"), ip("2001:db8:3::2")}},
	}}})
	c.Step(at(0), EvNetState{State: laptopNet()})
	acts := c.Step(at(0), EvConns{Conns: []Conn{
		{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2")}},
		{Name: "backup", RemoteAddrs: []netip.Addr{ip("10.4.0.2")}},
		{Name: "lab", RemoteAddrs: []netip.Addr{ip("192.0.2.7")}},
	}})
	if _, ok := routed(acts, "backup"); ok || kinds(acts) != "start 10.1.0.2->10.3.0.2 standby; start 10.1.0.2->10.4.0.2 standby; start 10.1.0.2->192.0.2.7 standby; start 10.2.0.2->10.3.0.2 standby; start 10.2.0.2->10.4.0.2 standby; start 10.2.0.2->192.0.2.7 standby" {
		t.Fatalf("routing before the SA list: %s", kinds(acts))
	}
	sas := []SA{sa(1, pEth, true), sa(2, mkPair("10.1.0.2", "10.3.0.2"), true), sa(3, mkPair("10.2.0.2", "192.0.2.7"), true)}
	sas[1].Conn, sas[2].Conn = "backup", "lab"
	c.Step(at(0), EvSAList{SAs: sas})
	d, gen := c.Desired()
	if gen != 1 {
		t.Errorf("generation %d, want 1", gen)
	}
	if err := CheckInvariants(d, c.Snapshot()); err != nil {
		t.Error(err)
	}
	got := d.String() + "\n"
	path := filepath.Join("testdata", "desired.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("desired state:\n%s\nwant:\n%s", got, want)
	}
	var d2 Desired
	d2 = d.clone()
	if !d.Equal(d2) {
		t.Error("a clone is not equal")
	}
	d2.Groups[0].Prohibit = nil
	if d.Equal(d2) {
		t.Error("a changed state is equal")
	}
}
