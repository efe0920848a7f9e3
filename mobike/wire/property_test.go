package wire

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

// randBytes returns n random octets, or nil when n == 0.
func randBytes(r *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randNotify(r *rand.Rand) *Notify {
	switch r.IntN(8) {
	case 0:
		a := netip.AddrFrom4([4]byte(randBytes(r, 4)))
		n, _ := AdditionalAddress(a)
		return n
	case 1:
		a := netip.AddrFrom16([16]byte(randBytes(r, 16)))
		if a.Is4In6() {
			a = netip.MustParseAddr("2001:db8::1")
		}
		n, _ := AdditionalAddress(a)
		return n
	case 2:
		n, _ := Cookie2(randBytes(r, MinCookie2Len+r.IntN(MaxCookie2Len-MinCookie2Len+1)))
		return n
	case 3:
		n, _ := NoNATsAllowed(netip.AddrPortFrom(netip.AddrFrom4([4]byte(randBytes(r, 4))), uint16(r.Uint32())),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte(randBytes(r, 4))), uint16(r.Uint32())))
		return n
	case 4:
		return NATDetectionSource(SPI(randBytes(r, 8)), SPI(randBytes(r, 8)), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 4500))
	case 5:
		return &Notify{Protocol: ProtocolESP, SPI: randBytes(r, 4), Type: NotifyRekeySA}
	}
	return NotifyStatus([]NotifyType{NotifyMOBIKESupported, NotifyUpdateSAAddresses, NotifyNoAdditionalAddresses,
		NotifyUnacceptableAddresses, NotifyUnexpectedNATDetected}[r.IntN(5)])
}

func randPayload(r *rand.Rand) Payload {
	switch r.IntN(7) {
	case 0:
		sa := &SA{}
		for i := range 1 + r.IntN(3) {
			p := Proposal{Num: uint8(i + 1), Protocol: ProtocolID(1 + r.IntN(3)), SPI: randBytes(r, r.IntN(2)*8)}
			for range 1 + r.IntN(5) {
				t := Transform{Type: TransformType(1 + r.IntN(5)), ID: uint16(r.IntN(40))}
				if r.IntN(2) == 0 {
					t.Attributes = append(t.Attributes, KeyLength(uint16(128+64*r.IntN(3))))
				}
				if r.IntN(4) == 0 {
					t.Attributes = append(t.Attributes, Attribute{Type: uint16(r.IntN(100)), Data: randBytes(r, 1+r.IntN(6))})
				}
				p.Transforms = append(p.Transforms, t)
			}
			sa.Proposals = append(sa.Proposals, p)
		}
		return sa
	case 1:
		return &KE{Group: DHGroup(r.IntN(32)), Data: randBytes(r, 1+r.IntN(64))}
	case 2:
		return &Nonce{Data: randBytes(r, MinNonceLen+r.IntN(MaxNonceLen-MinNonceLen+1))}
	case 3:
		d := &Delete{Protocol: ProtocolID(r.IntN(4))}
		if n := r.IntN(3); n > 0 {
			d.SPISize = 4
			for range n {
				d.SPIs = append(d.SPIs, randBytes(r, 4))
			}
		}
		return d
	case 4:
		raw := []PayloadType{PayloadIDi, PayloadIDr, PayloadCERT, PayloadCERTREQ, PayloadAUTH, PayloadVendorID,
			PayloadTSi, PayloadTSr, PayloadCP, PayloadEAP, 200}
		return &Raw{Kind: raw[r.IntN(len(raw))], Body: randBytes(r, 1+r.IntN(20))}
	}
	return randNotify(r)
}

// TestRoundTripProperty: decode(encode(m)) == m for random well-formed
// messages, and encode is deterministic.
func TestRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := &Message{Header: Header{
			SPIi: SPI(randBytes(r, 8)), SPIr: SPI(randBytes(r, 8)), Version: Version,
			Exchange: ExchangeType(34 + r.IntN(4)), Flags: Flags(r.IntN(2)*8 | r.IntN(2)*0x20),
			MessageID: r.Uint32(),
		}}
		for range r.IntN(8) {
			m.Payloads = append(m.Payloads, randPayload(r))
		}
		if r.IntN(3) == 0 {
			m.Payloads = append(m.Payloads, &Encrypted{FirstInner: PayloadNotify, Body: randBytes(r, 1+r.IntN(80))})
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("case %d: marshal: %v", i, err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("case %d: parse: %v\n%x", i, err, b)
		}
		if got.Length != uint32(len(b)) {
			t.Fatalf("case %d: Length %d", i, got.Length)
		}
		want := *m
		want.Length, want.NextPayload = got.Length, got.NextPayload
		if len(m.Payloads) > 0 && got.NextPayload != m.Payloads[0].PayloadType() {
			t.Fatalf("case %d: NextPayload %v", i, got.NextPayload)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("case %d: round trip differs\n got %#v\nwant %#v", i, got.Payloads, want.Payloads)
		}
	}
}
