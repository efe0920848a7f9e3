package mobike

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// fuzzWorld decodes bytes into events over a small universe of links,
// addresses, peers, connections and SAs, so that random input reaches deep
// states.
var (
	fzLocals = []netip.Prefix{
		netip.MustParsePrefix("10.1.0.2/24"), netip.MustParsePrefix("10.2.0.2/24"),
		netip.MustParsePrefix("2001:db8:1::2/64"), netip.MustParsePrefix("fe80::2/64"),
	}
	fzPeers = []netip.Addr{ip("10.3.0.2"), ip("10.4.0.2"), ip("2001:db8:3::2")}
	fzConns = []string{"a", "b"}
)

type fuzzReader struct {
	b []byte
	i int
}

func (r *fuzzReader) next() int {
	if r.i >= len(r.b) {
		return 0
	}
	v := int(r.b[r.i])
	r.i++
	return v
}

func (r *fuzzReader) done() bool { return r.i >= len(r.b) }

func fuzzPair(r *fuzzReader) Pair {
	return Pair{Local: fzLocals[r.next()%len(fzLocals)].Addr(), Remote: fzPeers[r.next()%len(fzPeers)]}
}

func fuzzEvent(r *fuzzReader) Event {
	switch r.next() % 12 {
	case 0, 1:
		ns := NetState{}
		m := r.next()
		for i := 0; i < 3; i++ {
			ns.Links = append(ns.Links, Link{Index: i + 2, Name: fmt.Sprintf("l%d", i), Kind: UplinkKind(i + 1), Up: m&(1<<i) != 0})
		}
		for i, p := range fzLocals {
			if m&(8<<i) != 0 {
				continue
			}
			ns.Addrs = append(ns.Addrs, Address{Prefix: p, LinkIdx: 2 + (i+r.next())%3, Flags: AddrFlags(r.next() % 16)})
		}
		ns.Gateways = []Gateway{{LinkIdx: 2, Via: ip("10.1.0.1")}, {LinkIdx: 3, Via: ip("10.2.0.1")}, {LinkIdx: 4, Via: ip("2001:db8:1::1")}}
		return EvNetState{State: ns}
	case 2, 3, 4:
		ok := r.next()%3 != 0
		n := r.next() % 5
		ev := EvProbeResult{Pair: fuzzPair(r), OK: ok, RTT: time.Duration(r.next()) * 5 * time.Millisecond,
			Stats: PathStats{Sent: uint64(r.next() % 20), ConsecLost: n, LossRatio: float64(r.next()%11) / 10,
				SRTT: time.Duration(r.next()) * 5 * time.Millisecond, NAT: NATVerdict(r.next() % 3)}}
		if ok {
			ev.Stats.ConsecLost = 0
		}
		return ev
	case 5:
		var sas []SA
		m := r.next()
		for id := uint32(1); id <= 4; id++ {
			if m&(1<<id) != 0 {
				p := fuzzPair(r)
				sas = append(sas, SA{Conn: fzConns[id%2], UniqueID: id, State: IKEState(r.next() % 4), Initiator: m&1 == 0 || id == 4,
					Local: netip.AddrPortFrom(p.Local, 4500), Remote: netip.AddrPortFrom(p.Remote, 4500)})
			}
		}
		return EvSAList{SAs: sas}
	case 6:
		id := uint32(r.next()%5 + 1)
		p := fuzzPair(r)
		return EvIKEUpdate{Conn: fzConns[id%2], UniqueID: id, NewLocal: netip.AddrPortFrom(p.Local, 4500), NewRemote: netip.AddrPortFrom(p.Remote, 4500)}
	case 7:
		var cs []Conn
		m := r.next()
		for i, n := range fzConns {
			if m&(1<<i) != 0 {
				cs = append(cs, Conn{Name: n, RemoteAddrs: []netip.Addr{fzPeers[(m>>2+i)%3], fzPeers[(m>>4+i)%3]}})
			}
		}
		return EvConns{Conns: cs}
	case 8:
		m := r.next()
		pol := policy.Settings{}
		if m&1 != 0 {
			pol.Conns = append(pol.Conns, policy.ConnPolicy{Name: "a", NAT: policy.NATForbid, HoldDown: policy.NoHoldDown, MoveBudget: 2})
		}
		if m&2 != 0 {
			pol.Uplinks = append(pol.Uplinks, policy.UplinkPolicy{Name: "l0", Exclude: true})
		}
		if m&4 != 0 {
			pol.Default.AllowedUplinks = []string{"l1", "wwan"}
		}
		return EvConfig{Policy: pol}
	case 9:
		up := ""
		if r.next()%2 == 0 {
			up = fmt.Sprintf("l%d", r.next()%3)
		}
		return EvPrefer{Conn: fzConns[r.next()%2], Uplink: up, Until: time.Time{}.Add(time.Duration(r.next()) * time.Second)}
	case 10:
		switch r.next() % 4 {
		case 0:
			return EvCharon{Up: r.next()%2 == 0}
		case 1:
			return EvSADown{UniqueID: uint32(r.next()%5 + 1)}
		case 2:
			var err error
			if r.next()%2 == 0 {
				err = fmt.Errorf("boom")
			}
			return EvRoutingApplied{Gen: uint64(r.next() % 8), Failed: []string{fzConns[r.next()%2]}, Err: err}
		default:
			p := fuzzPair(r)
			return EvSARekey{OldID: uint32(r.next()%5 + 1), New: SA{Conn: "a", UniqueID: uint32(r.next()%8 + 1), Initiator: true, State: IKEEstablished,
				Local: netip.AddrPortFrom(p.Local, 4500), Remote: netip.AddrPortFrom(p.Remote, 4500)}}
		}
	}
	return EvTimer{}
}

// runFuzz feeds the decoded events and checks invariants; it returns a
// rendering of everything that came out.
func runFuzz(t *testing.T, data []byte) string {
	r := &fuzzReader{b: data}
	c := New(Config{})
	now := time.Time{}.Add(time.Hour)
	var out strings.Builder
	started := map[Pair]ActProbeStart{}
	for steps := 0; !r.done() && steps < 200; steps++ {
		now = now.Add(time.Duration(r.next()) * 50 * time.Millisecond)
		var ev Event = EvTimer{}
		if dl := c.NextDeadline(); dl.IsZero() || now.Before(dl) {
			ev = fuzzEvent(r)
		} else {
			now = dl
		}
		acts := c.Step(now, ev)
		if err := verifyIndexes(c); err != nil {
			t.Fatalf("step %d (%T%+v): %v", steps, ev, ev, err)
		}
		st := c.Snapshot()
		states := map[Pair]PathState{}
		for _, p := range st.Pairs {
			states[p.Pair] = p.State
		}
		for _, a := range acts {
			fmt.Fprintf(&out, "%T%+v\n", a, a)
			switch a := a.(type) {
			case ActRouting:
				checkDesired(t, a.State, st)
				for _, g := range a.State.Groups {
					if g.Pair.Local.Is4() != g.Pair.Remote.Is4() || g.Pair.Local.IsLinkLocalUnicast() {
						t.Fatalf("step %d: bad pair %s", steps, g.Pair)
					}
				}
			case ActProbeStart:
				if started[a.Pair] == a {
					t.Fatalf("step %d: identical probe start re-emitted for %s", steps, a.Pair)
				}
				started[a.Pair] = a
			case ActProbeStop:
				delete(started, a.Pair)
			}
		}
		for _, o := range c.TakeTrace() {
			out.WriteString(o.String())
			out.WriteByte('\n')
			sr, ok := o.(SteerRequested)
			if !ok {
				continue
			}
			if s := states[sr.To]; !s.Usable() {
				t.Fatalf("step %d: steer %s onto a %s pair", steps, sr.To, s)
			}
			for _, cv := range st.Conns {
				if cv.Group == sr.Group && cv.Lead == cv.Name && cv.Policy.NAT == policy.NATForbid {
					for _, p := range st.Pairs {
						if p.Pair == sr.To && p.Stats.NAT == NATPresent {
							t.Fatalf("step %d: steer %s onto a NATed pair for a nat-forbid leader", steps, sr.To)
						}
					}
				}
			}
		}
		if dl := c.NextDeadline(); !dl.IsZero() && !dl.After(now) {
			t.Fatalf("step %d: deadline %s not after now %s", steps, dl, now)
		}
	}
	return out.String()
}

func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 0, 0, 7, 3, 5, 0x3e, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 2, 2, 1, 0, 3, 9, 9, 9, 9, 9})
	f.Add([]byte("\x00\x00\x07\x07\x0f\x05\x1e\x00\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x03\x00\x05\x00\x02\x04"))
	f.Add([]byte("steer me onto something broken, please; NAT NAT NAT timers"))
	for i := 0; i < 4; i++ {
		b := make([]byte, 120)
		for j := range b {
			b[j] = byte((j*31 + i*17) ^ (j >> 2))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := runFuzz(t, data)
		if b := runFuzz(t, data); a != b {
			t.Fatal("not deterministic")
		}
	})
}
