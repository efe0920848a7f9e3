package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// mobike-digest.md §2.1: INFORMATIONAL request from the original initiator,
// message ID 2, length 80.
func TestHeaderVector(t *testing.T) {
	want := mustHex(t, "0102030405060708 1112131415161718 2e 20 25 08 00000002 00000050")
	h := Header{SPIi: testSPIi, SPIr: testSPIr, NextPayload: PayloadEncrypted, Exchange: ExchangeInformational,
		Flags: FlagInitiator, MessageID: 2, Length: 80}
	if got := h.appendTo(nil); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	h2, err := ParseHeader(want)
	if err != nil {
		t.Fatal(err)
	}
	h.Version = Version
	if h2 != h {
		t.Errorf("ParseHeader = %+v, want %+v", h2, h)
	}
	if h2.IsResponse() || h2.MajorVersion() != 2 {
		t.Errorf("IsResponse/MajorVersion wrong: %v %d", h2.IsResponse(), h2.MajorVersion())
	}
}

// informational builds an INFORMATIONAL request with an opaque SK payload
// whose inner chain starts with N.
func informational() *Message {
	return &Message{
		Header: Header{SPIi: testSPIi, SPIr: testSPIr, Exchange: ExchangeInformational, Flags: FlagInitiator, MessageID: 2},
		Payloads: []Payload{
			&Encrypted{FirstInner: PayloadNotify, Body: bytes.Repeat([]byte{0xee}, 48)},
		},
	}
}

func TestMessageInformationalSK(t *testing.T) {
	b := mustMarshal(t, informational())
	want := mustHex(t, "0102030405060708 1112131415161718 2e 20 25 08 00000002 00000050")
	if !bytes.Equal(b[:HeaderLen], want) {
		t.Fatalf("header %x, want %x", b[:HeaderLen], want)
	}
	// SK generic header: next = first inner (N), length 52.
	if !bytes.Equal(b[28:32], []byte{41, 0, 0, 52}) {
		t.Errorf("SK header %x", b[28:32])
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	sk, ok := m.Find(PayloadEncrypted).(*Encrypted)
	if !ok || sk.FirstInner != PayloadNotify || len(sk.Body) != 48 {
		t.Fatalf("SK = %#v", m.Payloads)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	msgs := map[string]*Message{
		"informational": informational(),
		"init request":  sampleInitRequest(t).Message(),
		"init response": sampleInitResponse(t),
		"delete ike": {
			Header:   Header{SPIi: testSPIi, SPIr: testSPIr, Exchange: ExchangeInformational, MessageID: 9, Flags: FlagResponse},
			Payloads: []Payload{&Delete{Protocol: ProtocolIKE}, &Delete{Protocol: ProtocolESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}}},
		},
		"raw payloads": {
			Header: Header{SPIi: testSPIi, SPIr: testSPIr, Exchange: ExchangeIKEAuth, MessageID: 1},
			Payloads: []Payload{
				&Raw{Kind: PayloadIDi, Body: []byte{1, 0, 0, 0, 10, 1, 0, 2}},
				&Raw{Kind: PayloadVendorID, Body: []byte("strongSwan")},
				&Raw{Kind: 200, Body: []byte{1}}, // unknown, non-critical: kept
			},
		},
		"empty": {Header: Header{SPIi: testSPIi, Exchange: ExchangeInformational}},
	}
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, m)
			if int(binary.BigEndian.Uint32(b[24:28])) != len(b) {
				t.Errorf("length field %d, len %d", binary.BigEndian.Uint32(b[24:28]), len(b))
			}
			m2, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(m2.Payloads) != len(m.Payloads) {
				t.Fatalf("got %d payloads, want %d", len(m2.Payloads), len(m.Payloads))
			}
			for i := range m.Payloads {
				if m.Payloads[i].PayloadType() != m2.Payloads[i].PayloadType() {
					t.Errorf("payload %d: %v, want %v", i, m2.Payloads[i].PayloadType(), m.Payloads[i].PayloadType())
				}
			}
			if b2 := mustMarshal(t, m2); !bytes.Equal(b, b2) {
				t.Errorf("re-encode differs:\n%x\n%x", b, b2)
			}
			// Parse must not alias its input.
			for i := range b {
				b[i] ^= 0xff
			}
			if b3 := mustMarshal(t, m2); bytes.Equal(b3, b) {
				t.Error("parsed message aliases input")
			}
		})
	}
}

func TestDecodedValues(t *testing.T) {
	m, err := Parse(mustMarshal(t, sampleInitRequest(t).Message()))
	if err != nil {
		t.Fatal(err)
	}
	sa := m.Find(PayloadSA).(*SA)
	if !reflect.DeepEqual(sa.Proposals[0].String(), DefaultIKEProposal().String()) {
		t.Errorf("proposal %v", sa.Proposals[0])
	}
	if got := sa.Proposals[0].String(); got != "#1 IKE ENCR=20/128 PRF=5 DH=31" {
		t.Errorf("proposal string %q", got)
	}
	ke := m.Find(PayloadKE).(*KE)
	if ke.Group != DHCurve25519 || len(ke.Data) != 32 {
		t.Errorf("KE %v %d", ke.Group, len(ke.Data))
	}
	if n := m.Notify(NotifyNATDetectionSourceIP); n == nil {
		t.Error("no NAT-D source")
	}
	if m.Notify(NotifyCookie2) != nil || m.Find(PayloadDelete) != nil {
		t.Error("found absent payloads")
	}
	if len(m.Notifies()) != 2 {
		t.Errorf("notifies %v", m.Notifies())
	}
}

func TestParseErrors(t *testing.T) {
	good := mustMarshal(t, sampleInitRequest(t).Message())
	hdr := func(next PayloadType, body []byte) []byte {
		b := (&Header{SPIi: testSPIi, NextPayload: next, Exchange: ExchangeIKESAInit, Flags: FlagInitiator,
			Length: uint32(HeaderLen + len(body))}).appendTo(nil)
		return append(b, body...)
	}
	tests := []struct {
		name   string
		in     []byte
		err    error
		offset int
	}{
		{"empty", nil, ErrTruncated, 0},
		{"short header", good[:27], ErrTruncated, 27},
		{"major version 3", func() []byte { b := bytes.Clone(good); b[17] = 0x30; return b }(), ErrMajorVersion, 17},
		{"length beyond datagram", good[:len(good)-1], ErrTruncated, 24},
		{"length short of datagram", append(bytes.Clone(good), 0), ErrBadLength, 24},
		{"payload header truncated", hdr(PayloadNotify, []byte{0, 0}), ErrTruncated, 30},
		{"payload length < 4", hdr(PayloadNotify, []byte{0, 0, 0, 3}), ErrBadLength, 30},
		{"payload length too big", hdr(PayloadNotify, []byte{0, 0, 0, 9, 0, 0, 0x40, 0x0c}), ErrBadLength, 30},
		{"trailing after last", hdr(PayloadNotify, []byte{0, 0, 0, 8, 0, 0, 0x40, 0x0c, 0xff}), ErrTrailingData, 36},
		{"unknown critical", hdr(200, []byte{0, 0x80, 0, 4}), ErrUnsupportedCritical, 29},
		{"SK not last", hdr(PayloadEncrypted, []byte{41, 0, 0, 5, 0xaa, 0, 0, 0, 8, 0, 0, 0x40, 0x0c}), ErrSKNotLast, 28},
		{"notify short", hdr(PayloadNotify, []byte{0, 0, 0, 7, 0, 0, 0x40}), ErrTruncated, 35},
		{"notify spi beyond", hdr(PayloadNotify, []byte{0, 0, 0, 10, 3, 4, 0x40, 0x0c, 1, 2}), ErrBadLength, 33},
		{"ke short", hdr(PayloadKE, []byte{0, 0, 0, 6, 0, 31}), ErrTruncated, 34},
		{"nonce short", hdr(PayloadNonce, []byte{0, 0, 0, 8, 1, 2, 3, 4}), ErrBadLength, 32},
		{"delete short", hdr(PayloadDelete, []byte{0, 0, 0, 6, 1, 0}), ErrTruncated, 34},
		{"delete spi count", hdr(PayloadDelete, []byte{0, 0, 0, 12, 3, 4, 0, 2, 1, 2, 3, 4}), ErrBadLength, 34},
		{"proposal truncated", hdr(PayloadSA, []byte{0, 0, 0, 8, 0, 0, 0, 4}), ErrTruncated, 36},
		{"proposal length", hdr(PayloadSA, []byte{0, 0, 0, 12, 0, 0, 0, 9, 1, 1, 0, 0}), ErrBadLength, 34},
		{"proposal last=0 but more", hdr(PayloadSA, []byte{0, 0, 0, 20, 0, 0, 0, 8, 1, 1, 0, 0, 0, 0, 0, 8, 2, 1, 0, 0}), ErrTrailingData, 40},
		{"proposal last=2 but none", hdr(PayloadSA, []byte{0, 0, 0, 12, 2, 0, 0, 8, 1, 1, 0, 0}), ErrTruncated, 40},
		{"proposal bad last", hdr(PayloadSA, []byte{0, 0, 0, 12, 5, 0, 0, 8, 1, 1, 0, 0}), ErrBadLength, 32},
		{"proposal spi beyond", hdr(PayloadSA, []byte{0, 0, 0, 12, 0, 0, 0, 8, 1, 1, 4, 0}), ErrBadLength, 38},
		{"transform count", hdr(PayloadSA, []byte{0, 0, 0, 12, 0, 0, 0, 8, 1, 1, 0, 1}), ErrBadLength, 39},
		{"transform truncated", hdr(PayloadSA, []byte{0, 0, 0, 16, 0, 0, 0, 12, 1, 1, 0, 1, 0, 0, 0, 8}), ErrTruncated, 44},
		{"transform length", hdr(PayloadSA, []byte{0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 9, 1, 0, 0, 20}), ErrBadLength, 42},
		{"transform last=0 but more", hdr(PayloadSA, []byte{0, 0, 0, 28, 0, 0, 0, 24, 1, 1, 0, 2, 0, 0, 0, 8, 1, 0, 0, 20, 0, 0, 0, 8, 2, 0, 0, 5}), ErrTrailingData, 48},
		{"transform last=3 but none", hdr(PayloadSA, []byte{0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 1, 3, 0, 0, 8, 1, 0, 0, 20}), ErrTruncated, 48},
		{"transform bad last", hdr(PayloadSA, []byte{0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 1, 7, 0, 0, 8, 1, 0, 0, 20}), ErrBadLength, 40},
		{"attribute truncated", hdr(PayloadSA, []byte{0, 0, 0, 22, 0, 0, 0, 18, 1, 1, 0, 1, 0, 0, 0, 10, 1, 0, 0, 20, 0x80, 14}), ErrTruncated, 50},
		{"tlv attribute beyond", hdr(PayloadSA, []byte{0, 0, 0, 24, 0, 0, 0, 20, 1, 1, 0, 1, 0, 0, 0, 12, 1, 0, 0, 20, 0, 1, 0, 9}), ErrBadAttribute, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("no error, got %+v", m)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("not a *ParseError: %T", err)
			}
			if pe.Offset != tc.offset {
				t.Errorf("offset = %d, want %d (%v)", pe.Offset, tc.offset, err)
			}
			if pe.Error() == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	err := &ParseError{Offset: 30, Payload: PayloadNotify, Reason: "notify", Err: ErrTruncated}
	if got, want := err.Error(), "ike: parse notify at offset 30 (payload N): truncated"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestUnknownNonCriticalSkipped(t *testing.T) {
	// An unknown payload without C is kept as Raw and the chain continues.
	body := []byte{41, 0, 0, 5, 0xaa, 0, 0, 0, 8, 0, 0, 0x40, 0x0c}
	b := (&Header{SPIi: testSPIi, NextPayload: 200, Exchange: ExchangeIKESAInit, Length: uint32(HeaderLen + len(body))}).appendTo(nil)
	m, err := Parse(append(b, body...))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.Payloads[0].(*Raw); !ok || r.Kind != 200 || r.Critical || !bytes.Equal(r.Body, []byte{0xaa}) {
		t.Errorf("payload 0 = %#v", m.Payloads[0])
	}
	if m.Notify(NotifyMOBIKESupported) == nil {
		t.Error("notify after unknown payload lost")
	}
	// A known type with C set is accepted (C ignored for known types).
	body = []byte{0, 0x80, 0, 8, 0, 0, 0x40, 0x0c}
	b = (&Header{SPIi: testSPIi, NextPayload: PayloadNotify, Exchange: ExchangeIKESAInit, Length: uint32(HeaderLen + len(body))}).appendTo(nil)
	if _, err := Parse(append(b, body...)); err != nil {
		t.Errorf("known critical: %v", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		ps   []Payload
		err  error
	}{
		{"SK not last", []Payload{&Encrypted{}, NotifyStatus(NotifyMOBIKESupported)}, ErrSKNotLast},
		{"nil payload", []Payload{nil}, ErrBadLength},
		{"nil next payload", []Payload{NotifyStatus(NotifyMOBIKESupported), nil}, ErrBadLength},
		{"nonce short", []Payload{&Nonce{Data: make([]byte, 15)}}, ErrBadLength},
		{"nonce long", []Payload{&Nonce{Data: make([]byte, 257)}}, ErrBadLength},
		{"notify spi too long", []Payload{&Notify{SPI: make([]byte, 256)}}, ErrTooLong},
		{"payload too long", []Payload{&Raw{Kind: PayloadVendorID, Body: make([]byte, 70000)}}, ErrTooLong},
		{"delete spi size mismatch", []Payload{&Delete{Protocol: ProtocolESP, SPISize: 4, SPIs: [][]byte{{1}}}}, ErrBadLength},
		{"attribute type too big", []Payload{&SA{Proposals: []Proposal{{Transforms: []Transform{{Attributes: []Attribute{{Type: 0x8000}}}}}}}}, ErrBadAttribute},
		{"proposal spi too long", []Payload{&SA{Proposals: []Proposal{{SPI: make([]byte, 256)}}}}, ErrTooLong},
		{"tlv too long", []Payload{&SA{Proposals: []Proposal{{Transforms: []Transform{{Attributes: []Attribute{{Type: 1, Data: make([]byte, 70000)}}}}}}}}, ErrTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Message{Payloads: tc.ps}).Marshal()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var ee *EncodeError
			if !errors.As(err, &ee) || ee.Error() == "" {
				t.Errorf("not an *EncodeError: %T", err)
			}
		})
	}
}

func TestPeekHeader(t *testing.T) {
	b := mustMarshal(t, informational())
	h, err := PeekHeader(b[:40]) // payloads not needed
	if err != nil || h.MessageID != 2 || h.SPIr != testSPIr {
		t.Fatalf("PeekHeader = %+v, %v", h, err)
	}
	bad := bytes.Clone(b)
	binary.BigEndian.PutUint32(bad[24:], 27)
	if _, err := PeekHeader(bad); !errors.Is(err, ErrBadLength) {
		t.Errorf("length 27: %v", err)
	}
	if _, err := PeekHeader(b[:10]); !errors.Is(err, ErrTruncated) {
		t.Errorf("short: %v", err)
	}
}

func TestTypeStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ExchangeIKESAInit.String(), "IKE_SA_INIT"},
		{ExchangeIKEAuth.String(), "IKE_AUTH"},
		{ExchangeCreateChildSA.String(), "CREATE_CHILD_SA"},
		{ExchangeInformational.String(), "INFORMATIONAL"},
		{ExchangeType(99).String(), "exchange(99)"},
		{(FlagInitiator | FlagResponse).String(), "I|R"},
		{FlagVersion.String(), "V"},
		{Flags(0).String(), "none"},
		{Flags(0x09).String(), "I|0x1"},
		{PayloadNotify.String(), "N"},
		{PayloadType(99).String(), "payload(99)"},
		{ProtocolNone.String(), "none"},
		{ProtocolIKE.String(), "IKE"},
		{ProtocolAH.String(), "AH"},
		{ProtocolESP.String(), "ESP"},
		{ProtocolID(9).String(), "protocol(9)"},
		{TransformENCR.String(), "ENCR"},
		{TransformPRF.String(), "PRF"},
		{TransformINTEG.String(), "INTEG"},
		{TransformDH.String(), "DH"},
		{TransformESN.String(), "ESN"},
		{TransformType(9).String(), "transform-type(9)"},
		{DHModp2048.String(), "MODP_2048"},
		{DHECP256.String(), "ECP_256"},
		{DHECP384.String(), "ECP_384"},
		{DHCurve25519.String(), "CURVE_25519"},
		{DHGroup(99).String(), "dh(99)"},
		{testSPIi.String(), "0102030405060708"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if !(SPI{}).IsZero() || testSPIi.IsZero() {
		t.Error("SPI.IsZero wrong")
	}
}
