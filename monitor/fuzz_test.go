package monitor

import (
	"net/netip"
	"testing"

	"github.com/mobiked/mobiked/mobike"
)

// rawFromBytes decodes fuzz input into a kernel state drawn from small pools,
// so that indices, addresses and tables collide often.
func rawFromBytes(data []byte) Raw {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	names := []string{"eth0", "eth1", "wlan0", "wwan0", "lo", "ipsec0", "mgmt", "tun0"}
	types := []string{"device", "veth", "tuntap", "xfrm", "vti", "gre", "wwan", "bridge", "vlan", "ipip"}
	encaps := []string{"ether", "loopback", "none", "ppp", "rawip", "gre", "void", "generic"}
	devtypes := []string{"", "wlan", "wwan", "bridge"}
	tables := []int{0, 101, 220, 254, 255, 2100}
	addr := func() netip.Addr {
		b := next()
		switch b % 8 {
		case 0:
			return netip.AddrFrom4([4]byte{10, next() % 4, 0, next() % 4})
		case 1:
			return netip.AddrFrom4([4]byte{127, 0, 0, 1})
		case 2:
			return netip.AddrFrom4([4]byte{169, 254, 0, next() % 4})
		case 3:
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: next() % 4})
		case 4:
			return netip.AddrFrom16([16]byte{0xfe, 0x80, 15: next() % 4})
		case 5:
			return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 10, 15: next() % 4}) // 4in6
		case 6:
			return netip.AddrFrom16([16]byte{0xfd, 15: next() % 4})
		}
		return netip.Addr{}
	}
	var r Raw
	for len(data) > 0 {
		switch next() % 3 {
		case 0:
			r.Links = append(r.Links, RawLink{
				Index: int(next()%8) - 1, Name: names[next()%byte(len(names))], Type: types[next()%byte(len(types))],
				EncapType: encaps[next()%byte(len(encaps))], RawFlags: uint32(next()), DevType: devtypes[next()%4], Wireless: next()%5 == 0,
			})
		case 1:
			a := addr()
			bits := int(next() % 130)
			p := netip.PrefixFrom(a, bits)
			if next()%2 == 0 && a.IsValid() {
				p = netip.PrefixFrom(a, a.BitLen())
			}
			r.Addrs = append(r.Addrs, RawAddr{Prefix: p, LinkIdx: int(next() % 8), Flags: uint32(next())})
		case 2:
			rt := RawRoute{Table: tables[next()%byte(len(tables))], Type: int(next() % 3), Src: addr(), Gw: addr(), LinkIdx: int(next() % 8), Priority: int(next())}
			if b := next(); b%2 == 1 {
				rt.Dst = netip.PrefixFrom(addr(), int(b%33))
			}
			for range next() % 3 {
				rt.Nexthops = append(rt.Nexthops, RawNexthop{LinkIdx: int(next() % 8), Gw: addr()})
			}
			r.Routes = append(r.Routes, rt)
		}
	}
	return r
}

func FuzzBuild(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 3, 0, 1, 0, 0x41, 0, 0, 1, 0, 1, 9, 0, 2, 1, 2, 3, 1, 0, 5, 0, 1, 0})
	f.Add([]byte{0, 2, 5, 2, 2, 0x41, 1, 0, 1, 3, 3, 128, 0, 1, 0x40, 2, 2, 1, 6, 2, 0, 0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := rawFromBytes(data)
		before := cloneRaw(raw)
		rules := Rules{IgnoreTables: []int{2100}, IgnoreLinks: []string{"mgmt"}}
		s := Build(raw, rules)
		if !rawEqual(raw, before) {
			t.Fatalf("Build modified its input")
		}
		checkInvariants(t, s)
		for _, l := range s.Links {
			if l.Name == "mgmt" {
				t.Errorf("ignored link in state:%s", render(s))
			}
		}
		for _, g := range s.Gateways {
			if g.Table == 2100 {
				t.Errorf("gateway of ignored table:%s", render(s))
			}
		}
		if again := Build(raw, rules); !Equal(again, s) {
			t.Errorf("Build is not deterministic:%s\n%s", render(s), render(again))
		}
		if d := Diff(s, Clone(s)); len(d) != 0 {
			t.Errorf("Diff(s, s) = %v", d)
		}
		if d := Diff(mobike.NetState{}, s); (len(d) == 0) != (len(s.Links) == 0) {
			t.Errorf("Diff(empty, s) = %v for%s", d, render(s))
		}
	})
}
