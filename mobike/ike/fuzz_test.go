package ike

import (
	"bytes"
	"testing"

	"github.com/mobiked/mobiked/mobike/wire"
)

// FuzzOpen feeds arbitrary datagrams to the SK decoder of both suites: no
// panic, and what opens re-seals to a message that opens to the same chain.
func FuzzOpen(f *testing.F) {
	for _, s := range []Suite{gcm128, cbc256} {
		sk := testSK(f, s)
		b, _ := sk.Seal(infoHeader(), []wire.Payload{wire.NotifyStatus(wire.NotifyCookie2)}, make([]byte, sk.IVLen()))
		f.Add(b)
	}
	f.Add([]byte{})
	gcm, cbc := testSK(f, gcm128), testSK(f, cbc256)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, sk := range []*SK{gcm, cbc} {
			m, err := sk.Open(b)
			if err != nil {
				continue
			}
			again, err := sk.Seal(m.Header, m.Payloads, make([]byte, sk.IVLen()))
			if err != nil {
				t.Fatalf("re-seal: %v", err)
			}
			m2, err := sk.Open(again)
			if err != nil || len(m2.Payloads) != len(m.Payloads) {
				t.Fatalf("re-open: %v", err)
			}
		}
	})
}

// FuzzParseID covers both identity decoders.
func FuzzParseID(f *testing.F) {
	f.Add("conform.lab", []byte{2, 0, 0, 0, 'a'})
	f.Add("keyid:00ff", []byte{1, 0, 0, 0, 10, 0, 0, 1})
	f.Fuzz(func(t *testing.T, s string, body []byte) {
		if id, err := ParseID(s); err == nil {
			back, err := ParseIDPayload(id.Payload(wire.PayloadIDi).Body)
			if err != nil || back.Type != id.Type || !bytes.Equal(back.Data, id.Data) {
				t.Fatalf("%q: round trip %v %v", s, back, err)
			}
			_ = id.String()
		}
		if id, err := ParseIDPayload(body); err == nil {
			_ = id.String()
		}
	})
}
