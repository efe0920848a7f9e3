package wire

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
)

var (
	testLocal  = netip.MustParseAddrPort("10.1.0.2:40000")
	testRemote = netip.MustParseAddrPort("10.3.0.2:500")
)

func sampleInitRequest(t testing.TB) *InitRequest {
	t.Helper()
	return &InitRequest{
		SPIi:     testSPIi,
		KeyShare: bytes.Repeat([]byte{0x42}, 32),
		Nonce:    bytes.Repeat([]byte{0x4e}, 32),
		Local:    testLocal,
		Remote:   testRemote,
	}
}

// sampleInitResponse is an accepting response shaped like charon's:
// SA, KE, Nonce, NAT-D source/destination (as seen from the responder), and
// status notifies / a vendor ID.
func sampleInitResponse(t testing.TB) *Message {
	t.Helper()
	return initResponse(testLocal, testRemote)
}

func initResponse(seenPeer, self netip.AddrPort) *Message {
	prop := DefaultIKEProposal()
	return &Message{
		Header: Header{SPIi: testSPIi, SPIr: testSPIr, Exchange: ExchangeIKESAInit, Flags: FlagResponse},
		Payloads: []Payload{
			&SA{Proposals: []Proposal{prop}},
			&KE{Group: DHCurve25519, Data: bytes.Repeat([]byte{0x99}, 32)},
			&Nonce{Data: bytes.Repeat([]byte{0x77}, 32)},
			NATDetectionSource(testSPIi, testSPIr, self),
			NATDetectionDestination(testSPIi, testSPIr, seenPeer),
			&Raw{Kind: PayloadCERTREQ, Body: []byte{4}},
			NotifyStatus(NotifyIKEv2FragmentationSupported),
			&Notify{Type: NotifySignatureHashAlgorithms, Data: []byte{0, 2, 0, 3, 0, 4}},
			NotifyStatus(NotifyChildlessIKEv2Supported),
		},
	}
}

func TestInitRequestMessage(t *testing.T) {
	req := sampleInitRequest(t)
	m, err := Parse(mustMarshal(t, req.Message()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Exchange != ExchangeIKESAInit || m.Flags != FlagInitiator || m.MessageID != 0 || !m.SPIr.IsZero() {
		t.Errorf("header %+v", m.Header)
	}
	want := []PayloadType{PayloadSA, PayloadKE, PayloadNonce, PayloadNotify, PayloadNotify}
	if got := payloadTypes(m); !equalTypes(got, want) {
		t.Fatalf("payloads %v, want %v", got, want)
	}
	src, _ := m.Notify(NotifyNATDetectionSourceIP).NATHash()
	if src != NATDetectionHash(testSPIi, SPI{}, testLocal) {
		t.Error("source hash not over zero SPIr and local address")
	}
	dst, _ := m.Notify(NotifyNATDetectionDestinationIP).NATHash()
	if dst != NATDetectionHash(testSPIi, SPI{}, testRemote) {
		t.Error("destination hash not over remote address")
	}
	p := m.Find(PayloadSA).(*SA).Proposals[0]
	enc, _ := p.Get(TransformENCR)
	if kl, ok := enc.KeyLength(); enc.ID != EncrAESGCM16 || !ok || kl != 128 {
		t.Errorf("ENCR %+v", enc)
	}
	if prf, _ := p.Get(TransformPRF); prf.ID != PRFHMACSHA256 {
		t.Errorf("PRF %+v", prf)
	}
	if dh, _ := p.Get(TransformDH); DHGroup(dh.ID) != DHCurve25519 {
		t.Errorf("DH %+v", dh)
	}
	if _, ok := p.Get(TransformINTEG); ok {
		t.Error("AEAD proposal has INTEG")
	}

	// COOKIE retry: the cookie comes first; extra notifies last.
	req.Cookie = []byte("cookie-from-responder")
	req.Notifies = []*Notify{NotifyStatus(NotifyIKEv2FragmentationSupported)}
	req.Local = netip.AddrPort{}
	m, err = Parse(mustMarshal(t, req.Message()))
	if err != nil {
		t.Fatal(err)
	}
	want = []PayloadType{PayloadNotify, PayloadSA, PayloadKE, PayloadNonce, PayloadNotify}
	if got := payloadTypes(m); !equalTypes(got, want) {
		t.Fatalf("payloads %v, want %v", got, want)
	}
	if n := m.Payloads[0].(*Notify); n.Type != NotifyCookie || string(n.Data) != "cookie-from-responder" {
		t.Errorf("first payload %v", n)
	}
	if m.Notify(NotifyNATDetectionSourceIP) != nil {
		t.Error("NAT-D sent without a local address")
	}
}

func TestGenerateX25519(t *testing.T) {
	k, err := GenerateX25519(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(k.PublicKey().Bytes()); n != 32 {
		t.Errorf("public key %d octets", n)
	}
}

func TestGenerateKeyShare(t *testing.T) {
	for _, tc := range []struct {
		g   DHGroup
		len int
	}{{DHCurve25519, 32}, {DHECP256, 64}, {DHECP384, 96}} {
		k, pub, err := GenerateKeyShare(tc.g, rand.Reader)
		if err != nil || len(pub) != tc.len || k == nil {
			t.Errorf("%v: %d octets, %v", tc.g, len(pub), err)
		}
	}
	if _, _, err := GenerateKeyShare(DHModp2048, rand.Reader); !errors.Is(err, ErrUnsupportedGroup) {
		t.Errorf("modp2048: %v", err)
	}
}

func TestParseInitResponse(t *testing.T) {
	errResp := func(ps ...Payload) *Message {
		return &Message{Header: Header{SPIi: testSPIi, Exchange: ExchangeIKESAInit, Flags: FlagResponse}, Payloads: ps}
	}
	tests := []struct {
		name     string
		m        *Message
		accepted bool
		errType  NotifyType
		group    DHGroup
		cookie   string
	}{
		{"accept", sampleInitResponse(t), true, 0, 0, ""},
		{"invalid ke", errResp(&Notify{Type: NotifyInvalidKEPayload, Data: []byte{0, 19}}), false, NotifyInvalidKEPayload, DHECP256, ""},
		{"no proposal chosen", errResp(NotifyStatus(NotifyNoProposalChosen)), false, NotifyNoProposalChosen, 0, ""},
		{"cookie", errResp(&Notify{Type: NotifyCookie, Data: []byte("0123456789abcdef")}), false, 0, 0, "0123456789abcdef"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(mustMarshal(t, tc.m))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseInitResponse(m)
			if err != nil {
				t.Fatal(err)
			}
			if r.Accepted() != tc.accepted || r.Error != tc.errType || r.WantGroup != tc.group || string(r.Cookie) != tc.cookie {
				t.Errorf("got accepted=%v error=%v group=%v cookie=%q", r.Accepted(), r.Error, r.WantGroup, r.Cookie)
			}
			if tc.accepted {
				if r.SPIr != testSPIr || r.KE.Group != DHCurve25519 || len(r.Nonce) != 32 || r.Proposal.Num != 1 {
					t.Errorf("accepted fields %+v", r)
				}
				if len(r.NATDSource) != 1 || len(r.NATDDest) != 1 || len(r.Notifies) != 5 {
					t.Errorf("notifies %d/%d/%d", len(r.NATDSource), len(r.NATDDest), len(r.Notifies))
				}
			}
		})
	}
}

func TestParseInitResponseErrors(t *testing.T) {
	resp := func(ps ...Payload) *Message {
		return &Message{Header: Header{SPIi: testSPIi, Exchange: ExchangeIKESAInit, Flags: FlagResponse}, Payloads: ps}
	}
	tests := []struct {
		name string
		m    *Message
		err  error
	}{
		{"request", sampleInitRequest(t).Message(), ErrNotInitResponse},
		{"informational", informational(), ErrNotInitResponse},
		{"two proposals", resp(&SA{Proposals: []Proposal{DefaultIKEProposal(), DefaultIKEProposal()}}), ErrBadLength},
		{"short NAT-D", resp(&Notify{Type: NotifyNATDetectionDestinationIP, Data: make([]byte, 19)}), ErrBadNotifyData},
		{"bad invalid ke", resp(&Notify{Type: NotifyInvalidKEPayload, Data: []byte{1}}), ErrBadNotifyData},
		{"empty cookie", resp(&Notify{Type: NotifyCookie}), ErrBadNotifyData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseInitResponse(tc.m); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestDetectNAT(t *testing.T) {
	natted := netip.MustParseAddrPort("10.3.0.1:61234")
	tests := []struct {
		name  string
		resp  *Message
		local netip.AddrPort
		want  NATResult
	}{
		{"no NAT", initResponse(testLocal, testRemote), testLocal, NATResult{Checked: true}},
		{"local NATed", initResponse(natted, testRemote), testLocal, NATResult{Checked: true, LocalNAT: true}},
		{"fake source hash (peer forces encap)", initResponse(testLocal, netip.MustParseAddrPort("192.0.2.77:500")), testLocal,
			NATResult{Checked: true, RemoteNAT: true}},
		{"no NAT-D", &Message{Header: Header{Exchange: ExchangeIKESAInit, Flags: FlagResponse}}, testLocal, NATResult{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseInitResponse(tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.DetectNAT(tc.local, testRemote); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// Several source hashes: one match is enough.
	m := initResponse(testLocal, testRemote)
	m.Payloads = append(m.Payloads, NATDetectionSource(testSPIi, testSPIr, netip.MustParseAddrPort("10.4.0.2:500")))
	r, _ := ParseInitResponse(m)
	if got := r.DetectNAT(testLocal, testRemote); got.RemoteNAT {
		t.Errorf("second source hash made RemoteNAT: %+v", got)
	}
}

func payloadTypes(m *Message) []PayloadType {
	var ts []PayloadType
	for _, p := range m.Payloads {
		ts = append(ts, p.PayloadType())
	}
	return ts
}

func equalTypes(a, b []PayloadType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
