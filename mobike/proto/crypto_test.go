package proto

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// fakeCrypto records the engine's calls and answers as told. Seal encodes
// in clear with a per-call counter appended, so two Seal calls of one
// message differ and a re-sent Raw proves the engine did not call it again.
type fakeCrypto struct {
	calls     []string
	retries   int // InitResponse answers retry this many times
	initErr   error
	authReq   error
	authResp  error
	sealErrOn wire.ExchangeType
	seals     int
	lastReq   []byte
}

func (f *fakeCrypto) InitRequest(spiI wire.SPI, natd []wire.Payload) ([]wire.Payload, error) {
	f.calls = append(f.calls, fmt.Sprintf("init-request natd=%d", len(natd)))
	return append([]wire.Payload{&wire.Nonce{Data: bytes.Repeat([]byte{1}, 16)}}, natd...), nil
}

func (f *fakeCrypto) InitResponse(req []byte, resp *wire.Message, respRaw []byte) (bool, error) {
	f.calls = append(f.calls, "init-response")
	f.lastReq = req
	if f.retries > 0 {
		f.retries--
		return true, nil
	}
	return false, f.initErr
}

func (f *fakeCrypto) AuthRequest(local, remote netip.AddrPort) ([]wire.Payload, error) {
	f.calls = append(f.calls, "auth-request "+local.String()+" "+remote.String())
	return []wire.Payload{&wire.Raw{Kind: wire.PayloadIDi, Body: []byte{2, 0, 0, 0, 'x'}}}, f.authReq
}

func (f *fakeCrypto) AuthResponse(resp *wire.Message) error {
	f.calls = append(f.calls, "auth-response")
	return f.authResp
}

func (f *fakeCrypto) Seal(m *wire.Message) ([]byte, error) {
	if m.Exchange == f.sealErrOn {
		return nil, errors.New("seal broken")
	}
	f.seals++
	b, err := m.Marshal()
	return append(b, byte(f.seals)), err
}

type cryptoRig struct {
	t    *testing.T
	now  time.Time
	p    *Peer
	c    *fakeCrypto
	spiR wire.SPI
}

var (
	cLocal  = ap("192.0.2.10:40000")
	cRemote = ap("198.51.100.1:500")
)

func newCryptoRig(t *testing.T, c *fakeCrypto) *cryptoRig {
	t.Helper()
	p, err := New(Config{Role: Initiator, MOBIKE: true, NATT: true, Rand: seeded(1), Crypto: c, KeepLocalPort: true,
		RetransmitTimeout: time.Second, RetransmitTries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &cryptoRig{t: t, now: t0, p: p, c: c, spiR: wire.SPI{9, 9, 9, 9, 9, 9, 9, 9}}
}

// respond answers the request in s as a responder would; spiR zero for an
// IKE_SA_INIT refusal.
func (r *cryptoRig) respond(s Send, spiR wire.SPI, pl ...wire.Payload) []Output {
	r.t.Helper()
	spiI, _ := r.p.SPIs()
	if s.Msg.Exchange == wire.ExchangeIKESAInit && !spiR.IsZero() {
		pl = append(pl, wire.NATDetectionSource(spiI, spiR, s.Dst), wire.NATDetectionDestination(spiI, spiR, s.Src))
	}
	m := &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: spiR, Exchange: s.Msg.Exchange, Flags: wire.FlagResponse, MessageID: s.Msg.MessageID}, Payloads: pl}
	raw, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	return r.p.Handle(r.now, Packet{Src: s.Dst, Dst: s.Src, Msg: m, Raw: raw})
}

func (r *cryptoRig) start() Send {
	r.t.Helper()
	outs, err := r.p.Start(r.now, Pair{Local: cLocal, Remote: cRemote})
	if err != nil {
		r.t.Fatal(err)
	}
	return onlySend(r.t, outs)
}

// establish runs IKE_SA_INIT and IKE_AUTH and returns the IKE_AUTH request.
func (r *cryptoRig) establish() Send {
	r.t.Helper()
	auth := onlySend(r.t, r.respond(r.start(), r.spiR))
	r.respond(auth, r.spiR, wire.NotifyStatus(wire.NotifyMOBIKESupported))
	if !r.p.Established() {
		r.t.Fatalf("not established: %v", r.c.calls)
	}
	return auth
}

// The engine asks Crypto for the IKE_SA_INIT payloads (NAT-D handed over),
// passes the request as sent to InitResponse, asks for IKE_AUTH payloads on
// the floated pair (local port kept), and sends what Seal made.
func TestCryptoHandshakeCalls(t *testing.T) {
	c := &fakeCrypto{}
	r := newCryptoRig(t, c)
	init := r.start()
	if init.Raw == nil || init.Msg.Find(wire.PayloadNonce) == nil {
		t.Fatalf("IKE_SA_INIT %v raw=%x", FormatMessage(init.Msg), init.Raw)
	}
	auth := onlySend(t, r.respond(init, r.spiR))
	if !bytes.Equal(c.lastReq, init.Raw) {
		t.Error("InitResponse did not get the request bytes as sent")
	}
	if auth.Src != cLocal || auth.Dst != ap("198.51.100.1:4500") || auth.Msg.Find(wire.PayloadIDi) == nil {
		t.Errorf("IKE_AUTH %s->%s %s", auth.Src, auth.Dst, FormatMessage(auth.Msg))
	}
	outs := r.respond(auth, r.spiR, wire.NotifyStatus(wire.NotifyMOBIKESupported))
	if _, ok := has[Established](outs); !ok {
		t.Fatalf("not established: %v", outs)
	}
	want := "init-request natd=2|init-response|auth-request 192.0.2.10:40000 198.51.100.1:4500|auth-response"
	if got := strings.Join(c.calls, "|"); got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
}

// COOKIE / INVALID_KE_PAYLOAD: a retry is a new IKE_SA_INIT request with
// Message ID 0, built anew; the refusal carries a zero SPIr.
func TestCryptoInitRetry(t *testing.T) {
	c := &fakeCrypto{retries: 2}
	r := newCryptoRig(t, c)
	first := r.start()
	second := onlySend(t, r.respond(first, wire.SPI{}))
	third := onlySend(t, r.respond(second, wire.SPI{}))
	for _, s := range []Send{second, third} {
		if s.Msg.Exchange != wire.ExchangeIKESAInit || s.Msg.MessageID != 0 || bytes.Equal(s.Raw, first.Raw) {
			t.Errorf("retry %s raw equal=%t", FormatMessage(s.Msg), bytes.Equal(s.Raw, first.Raw))
		}
	}
	auth := onlySend(t, r.respond(third, r.spiR))
	if auth.Msg.Exchange != wire.ExchangeIKEAuth || auth.Msg.MessageID != 1 {
		t.Errorf("after retries: %s", FormatMessage(auth.Msg))
	}
	if n := strings.Count(strings.Join(c.calls, "|"), "init-request"); n != 3 {
		t.Errorf("%d init requests", n)
	}
}

func TestCryptoFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     *fakeCrypto
		cause CloseCause
		step  int // 0: IKE_SA_INIT response, 1: IKE_AUTH response
		notes []wire.Payload
	}{
		{"init refused", &fakeCrypto{initErr: errors.New("NO_PROPOSAL_CHOSEN")}, CloseHandshake, 0, nil},
		{"auth request", &fakeCrypto{authReq: errors.New("no keys")}, CloseInternal, 0, nil},
		{"auth refused", &fakeCrypto{authResp: errors.New("bad AUTH")}, CloseHandshake, 1, nil},
		{"auth failed notify", &fakeCrypto{authResp: errors.New("no AUTH")}, CloseHandshake, 1, []wire.Payload{wire.NotifyStatus(wire.NotifyAuthenticationFailed)}},
		{"unexpected nat", &fakeCrypto{authResp: errors.New("no AUTH")}, CloseUnexpectedNAT, 1, []wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}},
		{"seal auth", &fakeCrypto{sealErrOn: wire.ExchangeIKEAuth}, CloseInternal, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCryptoRig(t, tc.c)
			outs := r.respond(r.start(), r.spiR)
			if tc.step == 1 {
				outs = r.respond(onlySend(t, outs), r.spiR, tc.notes...)
			}
			if c, ok := has[SAClosed](outs); !ok || c.Cause != tc.cause || r.p.CloseCause() != tc.cause {
				t.Errorf("outputs %v, want closed by %v", outs, tc.cause)
			}
		})
	}
	// Seal failing on the very first request fails Start.
	p, _ := New(Config{Role: Initiator, Rand: seeded(1), Crypto: &fakeCrypto{sealErrOn: wire.ExchangeIKESAInit}})
	if _, err := p.Start(t0, Pair{Local: cLocal, Remote: cRemote}); !errors.Is(err, ErrClosed) {
		t.Errorf("start with a broken Seal: %v", err)
	}
	// The IKE_SA_INIT response's bytes are needed for the responder's AUTH.
	r := newCryptoRig(t, &fakeCrypto{})
	s := r.start()
	spiI, _ := r.p.SPIs()
	m := &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: r.spiR, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse}}
	if c, ok := has[SAClosed](r.p.Handle(r.now, Packet{Src: s.Dst, Dst: s.Src, Msg: m})); !ok || c.Cause != CloseInternal {
		t.Error("response without Raw accepted")
	}
	if _, err := New(Config{Role: Responder, Rand: seeded(1), Crypto: &fakeCrypto{}}); err == nil {
		t.Error("crypto accepted for the responder role")
	}
}

// An error notify next to a valid AUTH is about the CHILD_SA: the IKE SA is
// up (RFC 7296 §1.2).
func TestCryptoChildErrorKeepsIKESA(t *testing.T) {
	r := newCryptoRig(t, &fakeCrypto{})
	auth := onlySend(t, r.respond(r.start(), r.spiR))
	outs := r.respond(auth, r.spiR, wire.NotifyStatus(wire.NotifyTSUnacceptable), wire.NotifyStatus(wire.NotifyMOBIKESupported))
	if e, ok := has[Established](outs); !ok || !e.MOBIKE {
		t.Errorf("outputs %v", outs)
	}
}

// B5 with Crypto: a retransmission and a re-sent stored response carry the
// bytes Seal made once.
func TestCryptoRawReused(t *testing.T) {
	c := &fakeCrypto{}
	r := newCryptoRig(t, c)
	r.establish()
	outs, err := r.p.TestPaths(r.now, []Pair{r.p.IKEPair()})
	if err != nil {
		t.Fatal(err)
	}
	first := onlySend(t, outs)
	again := onlySend(t, r.p.OnTimer(r.now.Add(time.Hour)))
	if !bytes.Equal(first.Raw, again.Raw) {
		t.Error("retransmission re-sealed")
	}
	// a request of the peer, and its retransmission from another source
	spiI, spiR := r.p.SPIs()
	req := &wire.Message{Header: wire.Header{SPIi: spiI, SPIr: spiR, Exchange: wire.ExchangeInformational, MessageID: 0}}
	one := onlySend(t, r.p.Handle(r.now, Packet{Src: ap("198.51.100.1:4500"), Dst: cLocal, Msg: req}))
	two := onlySend(t, r.p.Handle(r.now, Packet{Src: ap("198.51.100.2:4500"), Dst: cLocal, Msg: req}))
	if one.Raw == nil || !bytes.Equal(one.Raw, two.Raw) || two.Dst != ap("198.51.100.2:4500") {
		t.Errorf("stored response %x / %x to %s", one.Raw, two.Raw, two.Dst)
	}
}

// Delete: answered closes with CloseDeleted; only an established SA can be
// deleted; an unanswered Delete times out.
func TestDelete(t *testing.T) {
	r := newCryptoRig(t, &fakeCrypto{})
	if _, err := r.p.Delete(r.now); !errors.Is(err, ErrNotEstablished) {
		t.Errorf("delete before establishment: %v", err)
	}
	r.establish()
	outs, err := r.p.Delete(r.now)
	if err != nil {
		t.Fatal(err)
	}
	del := onlySend(t, outs)
	if d, ok := del.Msg.Find(wire.PayloadDelete).(*wire.Delete); !ok || d.Protocol != wire.ProtocolIKE {
		t.Fatalf("delete request %s", FormatMessage(del.Msg))
	}
	if c, ok := has[SAClosed](r.respond(del, r.spiR)); !ok || c.Cause != CloseDeleted {
		t.Errorf("after answer: %v", r.p.CloseCause())
	}

	r = newCryptoRig(t, &fakeCrypto{})
	r.establish()
	r.p.Delete(r.now)
	for i := 0; i < 10 && r.p.Established(); i++ {
		r.p.OnTimer(r.now.Add(time.Duration(i+1) * time.Hour))
	}
	if r.p.CloseCause() != CloseTimeout {
		t.Errorf("unanswered delete: %v", r.p.CloseCause())
	}
}

func TestCloseCauseStrings(t *testing.T) {
	seen := map[string]bool{}
	for c := CloseTimeout; c <= CloseInternal; c++ {
		s := c.String()
		if seen[s] || strings.HasPrefix(s, "close-cause(") {
			t.Errorf("%d: %q", c, s)
		}
		seen[s] = true
	}
	if CloseCause(99).String() != "close-cause(99)" {
		t.Error(CloseCause(99).String())
	}
	if s := (AddressListAcknowledged{MsgID: 3, Error: wire.NotifyUnacceptableAddresses}).String(); !strings.Contains(s, "UNACCEPTABLE") {
		t.Error(s)
	}
	if s := (PathTestResult{MsgID: 2, Pair: pr("192.0.2.1:1", "192.0.2.2:2")}).String(); !strings.Contains(s, "answered on") {
		t.Error(s)
	}
}
