package monitor

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mobiked/mobiked/mobike"
)

func TestDiff(t *testing.T) {
	base := labState
	tests := []struct {
		name   string
		old    mobike.NetState
		change func(*mobike.NetState)
		want   []mobike.NetReason
	}{
		{name: "equal", old: base(), change: func(*mobike.NetState) {}, want: nil},
		{name: "from empty", old: mobike.NetState{}, change: func(*mobike.NetState) {},
			want: []mobike.NetReason{mobike.NetLinkAdded, mobike.NetAddrAdded, mobike.NetGatewayChanged}},
		{name: "link down", old: base(), change: func(s *mobike.NetState) { s.Links[0].Up = false },
			want: []mobike.NetReason{mobike.NetLinkDown}},
		{name: "link up", old: func() mobike.NetState { s := base(); s.Links[1].Up = false; return s }(),
			change: func(*mobike.NetState) {}, want: []mobike.NetReason{mobike.NetLinkUp}},
		{name: "link removed with its address and gateway", old: base(), change: func(s *mobike.NetState) {
			s.Links, s.Addrs, s.Gateways = s.Links[:1], s.Addrs[:1], s.Gateways[:1]
		}, want: []mobike.NetReason{mobike.NetLinkRemoved, mobike.NetAddrRemoved, mobike.NetGatewayChanged}},
		{name: "link renamed", old: base(), change: func(s *mobike.NetState) { s.Links[1].Name = "wwan0" },
			want: []mobike.NetReason{mobike.NetLinkAdded, mobike.NetLinkRemoved}},
		{name: "link kind learned", old: base(), change: func(s *mobike.NetState) { s.Links[1].Kind = mobike.KindWLAN },
			want: []mobike.NetReason{mobike.NetLinkAdded}},
		{name: "address added", old: base(), change: func(s *mobike.NetState) {
			s.Addrs = append(s.Addrs, mobike.Address{Prefix: mustPrefix("2001:db8::1/64"), LinkIdx: 2})
		}, want: []mobike.NetReason{mobike.NetAddrAdded}},
		{name: "address moved to another link", old: base(), change: func(s *mobike.NetState) { s.Addrs[0].LinkIdx = 3 },
			want: []mobike.NetReason{mobike.NetAddrAdded, mobike.NetAddrRemoved}},
		{name: "prefix length changed", old: base(), change: func(s *mobike.NetState) { s.Addrs[0].Prefix = mustPrefix("10.1.0.2/16") },
			want: []mobike.NetReason{mobike.NetAddrAdded, mobike.NetAddrRemoved}},
		{name: "DAD done", old: func() mobike.NetState { s := base(); s.Addrs[1].Flags = mobike.AddrTentative; return s }(),
			change: func(*mobike.NetState) {}, want: []mobike.NetReason{mobike.NetAddrFlagsChanged}},
		{name: "metric changed", old: base(), change: func(s *mobike.NetState) { s.Gateways[0].Metric = 300 },
			want: []mobike.NetReason{mobike.NetGatewayChanged}},
		{name: "next hop changed", old: base(), change: func(s *mobike.NetState) { s.Gateways[1].Via = mustAddr("10.2.0.254") },
			want: []mobike.NetReason{mobike.NetGatewayChanged}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nw := base()
			tc.change(&nw)
			oldCopy := Clone(tc.old)
			got := Diff(tc.old, nw)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Diff = %v, want %v", got, tc.want)
			}
			if !Equal(tc.old, oldCopy) {
				t.Errorf("Diff modified its input")
			}
			if len(Diff(nw, nw)) != 0 {
				t.Errorf("Diff of a state with itself is not empty")
			}
			if (len(got) == 0) != Equal(tc.old, nw) {
				t.Errorf("Diff empty = %v but Equal = %v", len(got) == 0, Equal(tc.old, nw))
			}
		})
	}
}

func TestClone(t *testing.T) {
	s := labState()
	c := Clone(s)
	c.Links[0].Up = false
	c.Addrs[0].LinkIdx = 99
	c.Gateways[0].Metric = 1
	if !Equal(s, labState()) {
		t.Fatalf("modifying a clone changed the original:%s", render(s))
	}
}

func TestFormat(t *testing.T) {
	s := labState()
	s.Addrs = append(s.Addrs, mobike.Address{Prefix: mustPrefix("fd00::2/64"), LinkIdx: 2, Flags: mobike.AddrTentative | mobike.AddrTemporary})
	s.Gateways = append(s.Gateways, mobike.Gateway{LinkIdx: 3, Metric: 5, Table: 101})
	want := `link 2 eth0 ethernet up
link 3 eth1 ethernet up
addr 10.1.0.2/24 dev 2
addr 10.2.0.2/24 dev 3
addr fd00::2/64 dev 2 tentative temporary
default via 10.1.0.1 dev 2 metric 100 table 254
default via 10.2.0.1 dev 3 metric 200 table 254
default dev 3 metric 5 table 101
`
	if got := Format(s); got != want {
		t.Errorf("Format:\n%s\nwant\n%s", got, want)
	}
}

// slowDiff is the obvious reference for Diff's address part: sets keyed by
// prefix and link.
func slowAddrReasons(old, new mobike.NetState) []mobike.NetReason {
	type key struct {
		p   netip.Prefix
		idx int
	}
	o := map[key]mobike.AddrFlags{}
	for _, a := range old.Addrs {
		o[key{a.Prefix, a.LinkIdx}] = a.Flags
	}
	n := map[key]mobike.AddrFlags{}
	for _, a := range new.Addrs {
		n[key{a.Prefix, a.LinkIdx}] = a.Flags
	}
	var added, removed, flags bool
	for k, f := range n {
		of, ok := o[k]
		added = added || !ok
		flags = flags || ok && of != f
	}
	for k := range o {
		if _, ok := n[k]; !ok {
			removed = true
		}
	}
	var out []mobike.NetReason
	if added {
		out = append(out, mobike.NetAddrAdded)
	}
	if removed {
		out = append(out, mobike.NetAddrRemoved)
	}
	if flags {
		out = append(out, mobike.NetAddrFlagsChanged)
	}
	return out
}

func FuzzDiff(f *testing.F) {
	f.Add([]byte{1, 0, 1, 2, 1, 9}, []byte{1, 0, 1, 2, 0x40, 1, 3, 3})
	f.Add([]byte{}, []byte{0, 2, 5, 2, 2, 0x41, 1, 0, 1, 3, 3, 128})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		// Two states over the same links, so that only addresses differ.
		links := []RawLink{
			{Index: 1, Name: "eth0", Type: "veth", EncapType: "ether", RawFlags: upRunning},
			{Index: 2, Name: "eth1", Type: "veth", EncapType: "ether", RawFlags: upRunning},
			{Index: 3, Name: "eth2", Type: "veth", EncapType: "ether", RawFlags: upRunning},
		}
		ra, rb := rawFromBytes(a), rawFromBytes(b)
		ra.Links, rb.Links, ra.Routes, rb.Routes = links, links, nil, nil
		old, nw := Build(ra, Rules{}), Build(rb, Rules{})
		var got []mobike.NetReason
		for _, r := range Diff(old, nw) {
			if r == mobike.NetAddrAdded || r == mobike.NetAddrRemoved || r == mobike.NetAddrFlagsChanged {
				got = append(got, r)
			}
		}
		if want := slowAddrReasons(old, nw); !slices.Equal(got, want) {
			t.Errorf("Diff address reasons = %v, reference %v\nold%s\nnew%s", got, want, render(old), render(nw))
		}
	})
}
