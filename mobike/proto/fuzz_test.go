package proto

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

type fuzzReader struct {
	b []byte
	i int
}

func (r *fuzzReader) byte() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *fuzzReader) done() bool { return r.i >= len(r.b) }

var fuzzAddrs = []string{p4500(I1), p4500(I2), p4500(I3), p4500(R1), p4500(R2), p4500(V), N1 + ":40000", I1 + ":500", "[2001:db8::1]:4500"}

func (r *fuzzReader) addr() netip.AddrPort { return ap(fuzzAddrs[int(r.byte())%len(fuzzAddrs)]) }

func (r *fuzzReader) payloads(spiI, spiR wire.SPI) []wire.Payload {
	var pl []wire.Payload
	for k := int(r.byte() % 7); k > 0; k-- {
		data := make([]byte, int(r.byte()%40))
		for j := range data {
			data[j] = r.byte()
		}
		switch r.byte() % 14 {
		case 0:
			pl = append(pl, wire.NotifyStatus(wire.NotifyUpdateSAAddresses))
		case 1:
			pl = append(pl, nn(wire.NotifyCookie2, data))
		case 2:
			pl = append(pl, wire.NATDetectionSource(spiI, spiR, r.addr()))
		case 3:
			pl = append(pl, wire.NATDetectionDestination(spiI, spiR, r.addr()))
		case 4:
			if n, err := wire.NoNATsAllowed(r.addr(), r.addr()); err == nil {
				pl = append(pl, n)
			} else {
				pl = append(pl, nn(wire.NotifyNoNATsAllowed, data))
			}
		case 5:
			pl = append(pl, nn(wire.NotifyAdditionalIP4Address, data[:min(len(data), 4)]))
		case 6:
			pl = append(pl, nn(wire.NotifyAdditionalIP6Address, data[:min(len(data), 16)]))
		case 7:
			pl = append(pl, wire.NotifyStatus(wire.NotifyNoAdditionalAddresses))
		case 8:
			pl = append(pl, wire.NotifyStatus(wire.NotifyUnacceptableAddresses))
		case 9:
			pl = append(pl, wire.NotifyStatus(wire.NotifyUnexpectedNATDetected))
		case 10:
			pl = append(pl, nn(wire.NotifyMOBIKESupported, data))
		case 11:
			pl = append(pl, &wire.Delete{Protocol: wire.ProtocolIKE})
		case 12:
			pl = append(pl, &wire.Raw{Kind: wire.PayloadType(r.byte()), Critical: r.byte()&1 == 1, Body: data})
		default:
			pl = append(pl, nn(wire.NotifyType(uint16(r.byte())<<8|uint16(r.byte())), data))
		}
	}
	return pl
}

// checkInvariants: with return routability required, the IPsec SAs only
// ever point at a peer address that passed it (M11, M22, M46).
func checkInvariants(t *testing.T, n *node) {
	t.Helper()
	p := n.peer
	if !p.Established() || !p.cfg.RequireRR {
		return
	}
	tp, _ := p.TrafficPair()
	if !p.Verified(tp.Remote) {
		t.Fatalf("%s moved traffic to unverified %s", n.name, tp.Remote)
	}
}

// FuzzHandle feeds arbitrary decoded-message sequences, API calls, timers
// and network changes into an established initiator/responder pair.
func FuzzHandle(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 1, 3, 2, 20})                                  // update to I2, run
	f.Add([]byte{0, 5, 2, 0, 0, 2, 0, 1, 16, 0, 2, 30})            // crafted UPDATE from V, run
	f.Add([]byte{4, 2, 1, 2, 2, 50, 7, 1, 3, 2, 2, 50})            // path test, block, update
	f.Add([]byte{5, 1, 2, 2, 10, 1, 0, 3, 0, 0, 1, 8, 0, 1, 2, 9}) // lists, crafted responses
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	{
		ic, rc := icfg(), rcfg()
		ic.RequireRR = true
		ic.DPDInterval = 3 * time.Second
		w := newWorld(t)
		i := w.addNode("I", ic, I1, I2, I3)
		r := w.addNode("R", rc, R1, R2)
		w.establish(i, r, pr(I1+":500", R1+":500"))
		w.addNAT(I3, N1)
		in := &fuzzReader{b: data}
		for step := 0; step < 64 && !in.done(); step++ {
			switch in.byte() % 8 {
			case 0, 1:
				target := r
				if in.byte()&1 == 1 {
					target = i
				}
				spiI, spiR := i.peer.SPIs()
				if in.byte()%5 == 0 {
					spiR[0] ^= 1
				}
				var fl wire.Flags
				if in.byte()&1 == 1 {
					fl |= wire.FlagResponse
				}
				ex := []wire.ExchangeType{wire.ExchangeInformational, wire.ExchangeInformational, wire.ExchangeIKEAuth, wire.ExchangeIKESAInit, 99}[in.byte()%5]
				m := &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: spiR, Exchange: ex, Flags: fl, MessageID: uint32(in.byte() % 8)}, Payloads: in.payloads(spiI, spiR)}
				if _, err := m.Marshal(); err != nil {
					continue
				}
				w.apply(target, target.peer.Handle(w.now, Packet{Src: in.addr(), Dst: in.addr(), Msg: m}))
			case 2:
				w.run(w.now.Sub(t0) + time.Duration(in.byte())*100*time.Millisecond)
			case 3:
				outs, err := i.peer.UpdateAddresses(w.now, Pair{Local: in.addr(), Remote: in.addr()})
				if err == nil {
					w.apply(i, outs)
				}
			case 4:
				outs, err := i.peer.TestPaths(w.now, []Pair{{Local: in.addr(), Remote: in.addr()}, {Local: in.addr(), Remote: in.addr()}})
				if err == nil {
					w.apply(i, outs)
				}
			case 5:
				n := i
				if in.byte()&1 == 1 {
					n = r
				}
				w.apply(n, n.peer.SetLocalAddrs(w.now, []netip.Addr{in.addr().Addr(), in.addr().Addr()}))
			case 6:
				w.apply(i, i.peer.HandleESP(w.now, in.addr(), in.addr()))
				w.esp(r)
			case 7:
				a, b := in.addr().Addr(), in.addr().Addr()
				k := [2]netip.Addr{a, b}
				w.blocked[k] = !w.blocked[k]
			}
			checkInvariants(t, i)
			checkInvariants(t, r)
		}
		w.run(w.now.Sub(t0) + time.Minute)
		checkInvariants(t, i)
		checkInvariants(t, r)
	}
}
