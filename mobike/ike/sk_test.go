package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/mobiked/mobiked/mobike/wire"
)

var (
	gcm128 = Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}
	cbc256 = Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHECP256}
)

func testSK(t testing.TB, s Suite) *SK {
	t.Helper()
	sk, err := NewSK(s, bytes.Repeat([]byte{7}, s.encKeyLen()), bytes.Repeat([]byte{8}, s.integKeyLen()))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func infoHeader() wire.Header {
	return wire.Header{SPIi: wire.SPI{1, 2, 3, 4, 5, 6, 7, 8}, SPIr: wire.SPI{9, 9, 9, 9, 9, 9, 9, 9}, Exchange: wire.ExchangeInformational, Flags: wire.FlagInitiator, MessageID: 5}
}

// Seal/Open round trip for both suites and several inner lengths (CBC pads
// to the block size, GCM does not pad); every octet of header, IV,
// ciphertext and ICV is covered by the integrity check.
func TestSKRoundTripAndTamper(t *testing.T) {
	for _, s := range []Suite{gcm128, cbc256} {
		sk := testSK(t, s)
		for _, inner := range [][]wire.Payload{
			nil,
			{wire.NotifyStatus(wire.NotifyUpdateSAAddresses)},
			{&wire.Notify{Type: wire.NotifyCookie2, Data: bytes.Repeat([]byte{3}, 16)}, &wire.Delete{Protocol: wire.ProtocolIKE}},
		} {
			b, err := sk.Seal(infoHeader(), inner, make([]byte, sk.IVLen()))
			if err != nil {
				t.Fatal(err)
			}
			h, _ := wire.PeekHeader(b)
			if int(h.Length) != len(b) || h.NextPayload != wire.PayloadEncrypted {
				t.Fatalf("%s: header %+v for %d octets", s, h, len(b))
			}
			if s == cbc256 && (len(b)-wire.HeaderLen-4-cbcIVLen-hmacICVLen)%16 != 0 {
				t.Errorf("%s: ciphertext not block aligned", s)
			}
			m, err := sk.Open(b)
			if err != nil {
				t.Fatalf("%s: open: %v", s, err)
			}
			if len(m.Payloads) != len(inner) || m.MessageID != 5 {
				t.Errorf("%s: opened %s", s, m)
			}
			for i := range b {
				c := bytes.Clone(b)
				c[i] ^= 0x01
				if _, err := sk.Open(c); err == nil {
					t.Fatalf("%s: flipped octet %d accepted", s, i)
				}
			}
		}
		if _, err := sk.Seal(infoHeader(), nil, []byte{1}); err == nil {
			t.Errorf("%s: short IV accepted", s)
		}
		if _, err := sk.Seal(infoHeader(), []wire.Payload{&wire.Encrypted{}}, make([]byte, sk.IVLen())); !errors.Is(err, ErrNestedSK) {
			t.Errorf("%s: nested SK sealed: %v", s, err)
		}
	}
}

// gcmRaw seals plain (inner payloads | padding | pad length, as given) with
// the AES-GCM SK, bypassing Seal's checks.
func gcmRaw(sk *SK, first wire.PayloadType, plain []byte) []byte {
	m := &wire.Message{Header: infoHeader(), Payloads: []wire.Payload{&wire.Encrypted{FirstInner: first, Body: make([]byte, 8+len(plain)+16)}}}
	raw, _ := m.Marshal()
	body := raw[len(raw)-8-len(plain)-16:]
	nonce := append(bytes.Clone(sk.salt), body[:8]...)
	sk.aead.Seal(body[8:8], nonce, plain, raw[:len(raw)-len(body)])
	return raw
}

// An SK payload inside the decrypted chain is refused, as are bad padding
// and messages without an SK payload.
func TestSKOpenRefuses(t *testing.T) {
	sk := testSK(t, gcm128)
	// inner chain: one SK payload (generic header + 4 octets), pad length 0
	nested := []byte{0, 0, 0, 8, 1, 2, 3, 4, 0}
	if _, err := sk.Open(gcmRaw(sk, wire.PayloadEncrypted, nested)); !errors.Is(err, ErrNestedSK) {
		t.Errorf("nested SK: %v", err)
	}
	clear, _ := (&wire.Message{Header: infoHeader(), Payloads: []wire.Payload{wire.NotifyStatus(wire.NotifyCookie2)}}).Marshal()
	if _, err := sk.Open(clear); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("clear message: %v", err)
	}
	empty, _ := (&wire.Message{Header: infoHeader()}).Marshal()
	if _, err := sk.Open(empty); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("empty message: %v", err)
	}
	if _, err := sk.Open(gcmRaw(sk, wire.PayloadNone, []byte{0xff})); !errors.Is(err, ErrBadPadding) {
		t.Errorf("bad padding: %v", err)
	}
	if _, err := NewSK(gcm128, make([]byte, 16), nil); err == nil {
		t.Error("GCM key without salt accepted")
	}
	if _, err := NewSK(cbc256, make([]byte, 32), nil); err == nil {
		t.Error("CBC without integrity key accepted")
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  IDType
		data []byte
		str  string
	}{
		{"10.1.0.2", IDIPv4, []byte{10, 1, 0, 2}, "10.1.0.2"},
		{"fd00::1", IDIPv6, netip.MustParseAddr("fd00::1").AsSlice(), "fd00::1"},
		{"conform.lab", IDFQDN, []byte("conform.lab"), "conform.lab"},
		{"@conform.lab", IDFQDN, []byte("conform.lab"), "conform.lab"},
		{"fqdn:user@x", IDFQDN, []byte("user@x"), "user@x"},
		{"user@example.org", IDEmail, []byte("user@example.org"), "user@example.org"},
		{"keyid:0a0b", IDKeyID, []byte{10, 11}, "keyid:0a0b"},
		{"@#0a0b", IDKeyID, []byte{10, 11}, "keyid:0a0b"},
	} {
		id, err := ParseID(tc.in)
		if err != nil || id.Type != tc.typ || !bytes.Equal(id.Data, tc.data) || id.String() != tc.str {
			t.Errorf("%q: %v %x %q %v", tc.in, id.Type, id.Data, id.String(), err)
		}
		back, err := ParseIDPayload(id.Payload(wire.PayloadIDi).Body)
		if err != nil || back.Type != id.Type || !bytes.Equal(back.Data, id.Data) {
			t.Errorf("%q: payload round trip %v %v", tc.in, back, err)
		}
	}
	for _, bad := range []string{"", "keyid:zz", "@#", "@", "fqdn:"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
	if _, err := ParseIDPayload([]byte{2, 0, 0, 0}); err == nil {
		t.Error("empty ID payload accepted")
	}
	if s := (ID{Type: 99, Data: []byte{1}}).String(); s != "id-type(99):01" {
		t.Error(s)
	}
}

// SuiteOf refuses what a responder must not answer: two transforms of a
// type, a missing one, an unsupported one; Offers checks the suite against
// one proposal.
func TestSuiteOf(t *testing.T) {
	p := Proposal(cbc256)
	s, err := SuiteOf(p)
	if err != nil || s != cbc256 || s.String() != "aes256-sha256-prfsha256-ecp256" {
		t.Fatalf("%v %v", s, err)
	}
	if !Offers(DefaultProposals(), cbc256) || !Offers(DefaultProposals(), gcm128) {
		t.Error("default offer misses a suite")
	}
	if Offers([]wire.Proposal{Proposal(gcm128)}, cbc256) {
		t.Error("CBC taken as offered in a GCM proposal")
	}
	mixed := cbc256
	mixed.Integ = wire.IntegNone
	if Offers(DefaultProposals(), mixed) {
		t.Error("CBC without integrity taken as offered")
	}
	two := Proposal(cbc256)
	two.Transforms = append(two.Transforms, wire.Transform{Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)})
	missing := Proposal(cbc256)
	missing.Transforms = missing.Transforms[:2]
	noKeyLen := Proposal(gcm128)
	noKeyLen.Transforms[0].Attributes = nil
	odd := Proposal(Suite{Encr: wire.EncrAESGCM16, KeyBits: 192, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519})
	for name, bad := range map[string]wire.Proposal{"two dh": two, "missing": missing, "no key length": noKeyLen, "gcm192": odd} {
		if _, err := SuiteOf(bad); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestNewInitiatorErrors(t *testing.T) {
	id, _ := ParseID("x.example")
	for name, cfg := range map[string]Config{
		"no rand":   {PSK: []byte("k"), ID: id},
		"no psk":    {Rand: bytes.NewReader(nil), ID: id},
		"no id":     {Rand: bytes.NewReader(nil), PSK: []byte("k")},
		"bad group": {Rand: bytes.NewReader(nil), PSK: []byte("k"), ID: id, Group: wire.DHModp2048},
	} {
		if _, err := NewInitiator(cfg); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	in, err := NewInitiator(Config{Rand: bytes.NewReader(make([]byte, 1024)), PSK: []byte("k"), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Seal(&wire.Message{Header: infoHeader()}); !errors.Is(err, ErrNoKeys) {
		t.Errorf("seal before keys: %v", err)
	}
	if _, err := in.AuthRequest(netip.AddrPort{}, netip.AddrPort{}); !errors.Is(err, ErrNoKeys) {
		t.Errorf("auth before keys: %v", err)
	}
	b, _ := (&wire.Message{Header: infoHeader()}).Marshal()
	if _, err := in.Open(b); !errors.Is(err, ErrNoKeys) {
		t.Errorf("open before keys: %v", err)
	}
	if _, err := NewKeyShare(wire.DHCurve25519, bytes.NewReader(nil)); err == nil {
		t.Error("key share from an empty reader")
	}
}
