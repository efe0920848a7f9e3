package mobike

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// checkDesired fails the test when the routing state breaks its invariants
// (CheckInvariants) for the state st it was computed from.
func checkDesired(t testing.TB, d Desired, st State) {
	t.Helper()
	if err := CheckInvariants(d, st); err != nil {
		t.Fatalf("%v:\n%s", err, d)
	}
}

// invState is the part of a Snapshot CheckInvariants reads, without the
// rankings (cheap enough to take after every step).
func invState(c *Controller) State {
	var st State
	for _, cn := range c.connList {
		v := ConnView{Name: cn.name, Peers: cn.peers}
		if cn.group != nil {
			v.Group = cn.group.name
		}
		st.Conns = append(st.Conns, v)
	}
	for _, s := range c.sas {
		st.SAs = append(st.SAs, SAView{SA: s.sa, Pair: s.pair})
	}
	return st
}

// TestDesiredInvariants drives the core with random connection sets (peer
// address sets that overlap in chains, disjoint allowed uplinks, NAT
// forbidden, responder SAs, SAs on any pair) and random path states, and
// checks the routing state after every step.
func TestDesiredInvariants(t *testing.T) {
	peers := []netip.Addr{ip("10.3.0.2"), ip("10.4.0.2"), ip("10.5.0.2"), ip("10.6.0.2"), ip("2001:db8:3::2"), ip("2001:db8:4::2")}
	ns := NetState{
		Links: []Link{{Index: 2, Name: "eth0", Kind: KindEthernet, Up: true}, {Index: 3, Name: "wlan0", Kind: KindWLAN, Up: true}, {Index: 4, Name: "wwan0", Kind: KindWWAN, Up: true}},
		Addrs: []Address{
			{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2}, {Prefix: netip.MustParsePrefix("2001:db8:1::2/64"), LinkIdx: 2},
			{Prefix: netip.MustParsePrefix("10.2.0.2/24"), LinkIdx: 3}, {Prefix: netip.MustParsePrefix("10.7.0.2/24"), LinkIdx: 4},
		},
		Gateways: []Gateway{{LinkIdx: 2, Via: ip("10.1.0.1")}, {LinkIdx: 2, Via: ip("2001:db8:1::1")}, {LinkIdx: 3, Via: ip("10.2.0.1")}, {LinkIdx: 4, Via: ip("10.7.0.1")}},
	}
	locals := []netip.Addr{ip("10.1.0.2"), ip("2001:db8:1::2"), ip("10.2.0.2"), ip("10.7.0.2")}
	uplinkSets := [][]string{nil, {"eth0"}, {"wlan0"}, {"wwan0"}, {"eth0", "wlan0"}}
	iters := 300
	if testing.Short() {
		iters = 50
	}
	for it := 0; it < iters; it++ {
		rng := rand.New(rand.NewPCG(uint64(it), 7))
		pick := func(n int) int { return rng.IntN(n) }
		nConns := 1 + pick(7)
		var pol policy.Settings
		var conns []Conn
		for i := 0; i < nConns; i++ {
			name := string(rune('a' + i))
			var ra []netip.Addr
			for k := 0; k < 1+pick(3); k++ {
				ra = append(ra, peers[pick(len(peers))])
			}
			if i > 0 && pick(3) == 0 {
				ra = conns[i-1].RemoteAddrs // same peers: may share a ranking class
			}
			conns = append(conns, Conn{Name: name, RemoteAddrs: ra})
			if pick(3) == 0 {
				continue // not in the config: the default policy
			}
			cp := policy.ConnPolicy{Name: name, AllowedUplinks: uplinkSets[pick(len(uplinkSets))], HoldDown: policy.NoHoldDown}
			if pick(4) == 0 {
				cp.NAT = policy.NATForbid
			}
			if pick(3) == 0 {
				cp.ExtraPeers = []netip.Addr{peers[pick(len(peers))]}
			}
			pol.Conns = append(pol.Conns, cp)
		}
		rng.Shuffle(len(pol.Conns), func(i, j int) { pol.Conns[i], pol.Conns[j] = pol.Conns[j], pol.Conns[i] })
		c := New(Config{Policy: pol})
		now := t0
		step := func(ev Event) {
			now = now.Add(time.Duration(pick(3000)) * time.Millisecond)
			if dl := c.NextDeadline(); !dl.IsZero() && !now.Before(dl) {
				now = dl
				ev = EvTimer{}
			}
			c.Step(now, ev)
			c.TakeTrace()
			if err := verifyIndexes(c); err != nil {
				t.Fatalf("iteration %d, %T%+v: %v", it, ev, ev, err)
			}
			// The state in force (emitted now or earlier: an unchanged state
			// must still hold for SAs that changed since).
			if d, gen := c.Desired(); gen > 0 {
				checkDesired(t, d, invState(c))
			}
		}
		step(EvNetState{State: ns})
		step(EvConns{Conns: conns})
		mkSAs := func() []SA {
			var sas []SA
			for id := uint32(1); id <= uint32(1+pick(6)); id++ {
				cn := conns[pick(len(conns))]
				r := cn.RemoteAddrs[pick(len(cn.RemoteAddrs))]
				if pick(5) == 0 {
					r = peers[pick(len(peers))] // an address charon learned
				}
				var l netip.Addr
				for l = locals[pick(len(locals))]; l.Is4() != r.Is4(); l = locals[pick(len(locals))] {
				}
				sas = append(sas, SA{Conn: cn.Name, UniqueID: id, State: []IKEState{IKEEstablished, IKEEstablished, IKEConnecting, IKERekeying}[pick(4)],
					Initiator: pick(4) != 0, Local: netip.AddrPortFrom(l, 4500), Remote: netip.AddrPortFrom(r, 4500)})
			}
			return sas
		}
		step(EvSAList{SAs: mkSAs()})
		for k := 0; k < 40; k++ {
			switch pick(13) {
			case 10:
				up := ""
				if pick(3) != 0 {
					up = ns.Links[pick(len(ns.Links))].Name
				}
				step(EvPrefer{Conn: conns[pick(len(conns))].Name, Uplink: up, Until: now.Add(time.Duration(pick(6000)) * time.Millisecond)})
			case 11:
				sa := mkSAs()[0]
				sa.UniqueID = uint32(1 + pick(8))
				step(EvSAUp{SA: sa})
			case 12:
				sas := mkSAs()
				step(EvSARekey{OldID: uint32(1 + pick(8)), New: sas[len(sas)-1]})
			case 0:
				step(EvSAList{SAs: mkSAs()})
			case 1:
				st := c.Snapshot()
				if len(st.SAs) > 0 {
					s := st.SAs[pick(len(st.SAs))]
					var l netip.Addr
					r := peers[pick(len(peers))]
					for l = locals[pick(len(locals))]; l.Is4() != r.Is4(); l = locals[pick(len(locals))] {
					}
					step(EvIKEUpdate{Conn: s.Conn, UniqueID: s.UniqueID, NewLocal: netip.AddrPortFrom(l, 4500), NewRemote: netip.AddrPortFrom(r, 4500)})
				}
			case 2:
				if pick(3) == 0 {
					step(EvConns{Conns: conns[:pick(len(conns))+1]})
				} else {
					step(EvConns{Conns: conns})
				}
			case 3:
				step(EvSADown{UniqueID: uint32(1 + pick(6))})
			default:
				st := c.Snapshot()
				if len(st.Pairs) == 0 {
					step(EvTimer{})
					continue
				}
				p := st.Pairs[pick(len(st.Pairs))].Pair
				var ev EvProbeResult
				if pick(3) == 0 {
					ev = lost(p, now, 3)
				} else {
					ev = good(p, now)
					if pick(4) == 0 {
						ev.Stats.NAT = NATPresent
					}
				}
				step(ev)
			}
		}
	}
}
