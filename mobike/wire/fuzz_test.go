package wire

import (
	"bytes"
	"errors"
	"testing"
)

func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	for _, m := range []*Message{
		sampleInitRequest(f).Message(),
		sampleInitResponse(f),
		informational(),
		{Header: Header{SPIi: testSPIi, Exchange: ExchangeIKESAInit, Flags: FlagResponse},
			Payloads: []Payload{&Notify{Type: NotifyInvalidKEPayload, Data: []byte{0, 31}}}},
		{Header: Header{SPIi: testSPIi, Exchange: ExchangeIKESAInit, Flags: FlagResponse},
			Payloads: []Payload{NotifyStatus(NotifyNoProposalChosen)}},
		{Header: Header{SPIi: testSPIi, Exchange: ExchangeIKESAInit, Flags: FlagResponse},
			Payloads: []Payload{&Notify{Type: NotifyCookie, Data: bytes.Repeat([]byte{1}, 16)}}},
		{Header: Header{SPIi: testSPIi, SPIr: testSPIr, Exchange: ExchangeInformational, MessageID: 3},
			Payloads: []Payload{&Delete{Protocol: ProtocolESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}}}}},
	} {
		seeds = append(seeds, mustMarshal(f, m))
	}
	// Real strongSwan messages.
	for _, c := range charonCaptures {
		seeds = append(seeds, readCapture(f, c.name+"-request.bin"), readCapture(f, c.name+"-response.bin"))
	}
	return seeds
}

// checkReencode asserts the codec's fixed point: whatever Parse accepts,
// Marshal encodes, and the encoding parses back to the same encoding.
func checkReencode(t *testing.T, m *Message) {
	b1, err := m.Marshal()
	if err != nil {
		t.Fatalf("parsed message does not marshal: %v", err)
	}
	m2, err := Parse(b1)
	if err != nil {
		t.Fatalf("re-encoded message does not parse: %v\n%x", err, b1)
	}
	b2, err := m2.Marshal()
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("not a fixed point: %v\n%x\n%x", err, b1, b2)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add(make([]byte, HeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error not a *ParseError: %v", err)
			}
			if pe.Offset < 0 || pe.Offset > len(b) {
				t.Fatalf("offset %d out of range 0..%d", pe.Offset, len(b))
			}
			return
		}
		checkReencode(t, m)
		for _, n := range m.Notifies() {
			_ = n.Validate()
		}
	})
}

func FuzzParsePayloads(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[16], s[HeaderLen:])
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		ps, err := ParsePayloads(PayloadType(first), b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(b) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		ft, out, err := MarshalPayloads(ps)
		if err != nil {
			t.Fatal(err)
		}
		ps2, err := ParsePayloads(ft, out)
		if err != nil {
			t.Fatal(err)
		}
		_, out2, err := MarshalPayloads(ps2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("not a fixed point: %v", err)
		}
	})
}

func FuzzParseInitResponse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		r, err := ParseInitResponse(m)
		if err != nil {
			return
		}
		res := r.DetectNAT(testLocal, testRemote)
		if res.Checked != (len(r.NATDSource) > 0 && len(r.NATDDest) > 0) {
			t.Fatalf("Checked=%v with %d/%d hashes", res.Checked, len(r.NATDSource), len(r.NATDDest))
		}
		if r.Accepted() && (r.KE == nil || r.Proposal == nil) {
			t.Fatal("accepted without KE or proposal")
		}
	})
}

func FuzzNotifyData(f *testing.F) {
	f.Add(uint16(NotifyAdditionalIP4Address), []byte{192, 0, 2, 1})
	f.Add(uint16(NotifyAdditionalIP6Address), make([]byte, 16))
	f.Add(uint16(NotifyNoNATsAllowed), make([]byte, 12))
	f.Add(uint16(NotifyNoNATsAllowed), make([]byte, 36))
	f.Add(uint16(NotifyCookie2), make([]byte, 8))
	f.Add(uint16(NotifyNATDetectionSourceIP), make([]byte, 20))
	f.Add(uint16(NotifyInvalidKEPayload), []byte{0, 31})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		n := &Notify{Type: NotifyType(typ), Data: data}
		valid := n.Validate() == nil
		switch n.Type {
		case NotifyAdditionalIP4Address, NotifyAdditionalIP6Address:
			a, err := n.Address()
			if (err == nil) != valid {
				t.Fatal("Address and Validate disagree")
			}
			if err == nil {
				n2, err := AdditionalAddress(a)
				if err != nil || n2.Type != n.Type || !bytes.Equal(n2.Data, data) {
					t.Fatalf("address round trip: %v %v", n2, err)
				}
			}
		case NotifyNoNATsAllowed:
			s, d, err := n.NoNATsAllowedAddrs()
			if (err == nil) != valid {
				t.Fatal("NoNATsAllowedAddrs and Validate disagree")
			}
			if err == nil {
				// v4-mapped addresses re-encode as IPv4, so a mixed pair
				// cannot be re-encoded.
				n2, err := NoNATsAllowed(s, d)
				if mixed := s.Addr().Unmap().Is4() != d.Addr().Unmap().Is4(); mixed != (err != nil) {
					t.Fatalf("NoNATsAllowed(%v, %v) err = %v", s, d, err)
				}
				if err != nil {
					return
				}
				s2, d2, _ := n2.NoNATsAllowedAddrs()
				if s2.Addr() != s.Addr().Unmap() || d2.Addr() != d.Addr().Unmap() || s2.Port() != s.Port() || d2.Port() != d.Port() {
					t.Fatalf("no-nats round trip %v %v -> %v %v", s, d, s2, d2)
				}
			}
		case NotifyCookie2:
			if _, err := n.Cookie2(); (err == nil) != valid {
				t.Fatal("Cookie2 and Validate disagree")
			}
		}
		_ = n.String()
	})
}

func FuzzStripNonESPMarker(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(AddNonESPMarker(s))
	}
	f.Add([]byte{0xff})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := StripNonESPMarker(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AddNonESPMarker(msg), b) {
			t.Fatal("marker round trip")
		}
		_, _ = Parse(msg)
	})
}
