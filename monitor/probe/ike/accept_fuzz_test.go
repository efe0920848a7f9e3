package ike

import (
	"context"
	"testing"

	"github.com/mobiked/mobiked/mobike/wire"
)

// FuzzExchangeAcceptance: the IKE probe counts the peer reachable exactly
// when a datagram parses as an IKE_SA_INIT response echoing the probe's fresh
// SPIi (the socket is connected to the peer's address and port, so the
// kernel drops other sources). The fuzzer mutates charon's answer or
// replaces it.
func FuzzExchangeAcceptance(f *testing.F) {
	f.Add([]byte{}, uint16(0), []byte{}, false)
	f.Add([]byte{1}, uint16(0), []byte{}, false)                                                          // another SPIi
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08}, uint16(0), []byte{}, false) // exchange type
	f.Add([]byte{}, uint16(28), []byte{}, false)
	f.Add([]byte{}, uint16(0), make([]byte, 28), true)
	f.Fuzz(func(t *testing.T, mask []byte, cut uint16, raw []byte, replace bool) {
		var sent []byte
		c := &fakeConn{t: t, respond: func(req *wire.Message) [][]byte {
			if sent != nil {
				return nil // later rounds (COOKIE, INVALID_KE) get no answer
			}
			pkt := accept(t, local, remote)(req)[0]
			if replace {
				pkt = append([]byte(nil), raw...)
			}
			for i, m := range mask {
				if i < len(pkt) {
					pkt[i] ^= m
				}
			}
			if cut > 0 && int(cut) < len(pkt) {
				pkt = pkt[:cut]
			}
			sent = pkt
			return [][]byte{pkt}
		}}
		res, err := exchange(context.Background(), c, wire.InitRequest{Local: local, Remote: remote})
		if err != nil {
			t.Fatal(err)
		}
		want := false
		if m, err := wire.Parse(sent); err == nil && m.SPIi == c.reqs[0].SPIi {
			_, err := wire.ParseInitResponse(m)
			want = err == nil
		}
		if res.Reachable != want {
			t.Fatalf("reachable %v for %x (a response to our SPI: %v)", res.Reachable, sent, want)
		}
	})
}
