package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/mobiked/mobiked/mobike/wire"
)

// ChildMode says whether IKE_AUTH carries a CHILD_SA proposal.
type ChildMode uint8

const (
	// ChildAuto omits the CHILD_SA (RFC 6023 childless initiation) when
	// the responder announced CHILDLESS_IKEV2_SUPPORTED in IKE_SA_INIT,
	// and proposes one otherwise.
	ChildAuto ChildMode = iota
	ChildAlways
	ChildNever
)

func (m ChildMode) String() string {
	switch m {
	case ChildAuto:
		return "auto"
	case ChildAlways:
		return "always"
	case ChildNever:
		return "never"
	}
	return "child-mode(" + strconv.Itoa(int(m)) + ")"
}

// Config configures an Initiator.
type Config struct {
	// Rand supplies key shares, nonces, child SPIs and CBC IVs
	// (crypto/rand in production). Required.
	Rand io.Reader
	// PSK is the pre-shared key both peers authenticate with. Required.
	PSK []byte
	// ID is this peer's identity (IDi). Required.
	ID ID
	// Proposals offered in IKE_SA_INIT; DefaultProposals() when empty.
	Proposals []wire.Proposal
	// Group of the first key share; wire.DHCurve25519 when zero. After an
	// INVALID_KE_PAYLOAD the group the responder asks for is used if it is
	// offered and implemented.
	Group wire.DHGroup
	// Child selects childless or child-proposing IKE_AUTH.
	Child ChildMode
	// MaxRetries bounds the IKE_SA_INIT retries (COOKIE, INVALID_KE_PAYLOAD);
	// default 4.
	MaxRetries int
}

// NotifyError is an exchange the responder refused with an error notify
// (NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED, ...).
type NotifyError struct {
	Exchange wire.ExchangeType
	Type     wire.NotifyType
}

func (e *NotifyError) Error() string {
	return fmt.Sprintf("ike: %s refused: %s", e.Exchange, e.Type)
}

// ErrRetries means the responder kept asking for another IKE_SA_INIT.
var ErrRetries = errors.New("ike: too many IKE_SA_INIT retries")

// ErrNoKeys means a message had to be protected before IKE_SA_INIT finished.
var ErrNoKeys = errors.New("ike: no keys yet")

// Child describes the CHILD_SA of IKE_AUTH.
type Child struct {
	Proposed bool            // a CHILD_SA proposal was sent
	SPIi     []byte          // our inbound ESP SPI
	Accepted *wire.Proposal  // the responder's choice, nil if refused or not proposed
	Error    wire.NotifyType // the responder's error notify about it, if any
}

// Initiator is the cryptographic half of an IKEv2 initiator; it implements
// mobike/proto's Crypto. It is not safe for concurrent use.
type Initiator struct {
	cfg   Config
	props []wire.Proposal
	group wire.DHGroup

	spiI, spiR wire.SPI
	ks         *KeyShare
	ni, nr     []byte
	cookie     []byte
	retries    int

	suite     Suite
	keys      *Keys
	out, in   *SK
	ivCounter uint64
	initReq   []byte
	initResp  []byte
	childless bool // the responder announced CHILDLESS_IKEV2_SUPPORTED

	child  Child
	peerID ID
	authed bool
}

// NewInitiator checks cfg and returns an Initiator.
func NewInitiator(cfg Config) (*Initiator, error) {
	switch {
	case cfg.Rand == nil:
		return nil, errors.New("ike: new initiator: no random source")
	case len(cfg.PSK) == 0:
		return nil, errors.New("ike: new initiator: no pre-shared key")
	case len(cfg.ID.Data) == 0:
		return nil, fmt.Errorf("ike: new initiator: %w: no identity", ErrBadID)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	}
	in := &Initiator{cfg: cfg, props: cfg.Proposals, group: cfg.Group}
	if len(in.props) == 0 {
		in.props = DefaultProposals()
	}
	if in.group == 0 {
		in.group = wire.DHCurve25519
	}
	if _, err := curve(in.group); err != nil {
		return nil, fmt.Errorf("ike: new initiator: %w", err)
	}
	return in, nil
}

func (in *Initiator) read(b []byte) error {
	if _, err := io.ReadFull(in.cfg.Rand, b); err != nil {
		return fmt.Errorf("ike: read random: %w", err)
	}
	return nil
}

// InitRequest returns the payloads of the IKE_SA_INIT request: a COOKIE
// notify first when the responder asked for one (RFC 7296 §2.6), then SA,
// KE, Nonce and the NAT detection notifies natd.
func (in *Initiator) InitRequest(spiI wire.SPI, natd []wire.Payload) ([]wire.Payload, error) {
	in.spiI = spiI
	if in.ks == nil || in.ks.Group != in.group {
		ks, err := NewKeyShare(in.group, in.cfg.Rand)
		if err != nil {
			return nil, err
		}
		in.ks = ks
	}
	if in.ni == nil {
		in.ni = make([]byte, 32)
		if err := in.read(in.ni); err != nil {
			return nil, err
		}
	}
	var pl []wire.Payload
	if in.cookie != nil {
		pl = append(pl, &wire.Notify{Type: wire.NotifyCookie, Data: in.cookie})
	}
	pl = append(pl, &wire.SA{Proposals: in.props}, &wire.KE{Group: in.ks.Group, Data: in.ks.Public()}, &wire.Nonce{Data: in.ni})
	return append(pl, natd...), nil
}

// InitResponse processes the IKE_SA_INIT response to req (the request's
// bytes as sent). A COOKIE request, or INVALID_KE_PAYLOAD naming a group that
// was offered, returns retry: the engine then sends a new request built by
// InitRequest. An accepted proposal derives the keys (RFC 7296 §2.14).
func (in *Initiator) InitResponse(req []byte, resp *wire.Message, respRaw []byte) (retry bool, err error) {
	r, err := wire.ParseInitResponse(resp)
	if err != nil {
		return false, err
	}
	if r.Cookie != nil || r.Error == wire.NotifyInvalidKEPayload {
		if in.retries >= in.cfg.MaxRetries {
			return false, ErrRetries
		}
		in.retries++
		if r.Cookie != nil {
			in.cookie = append([]byte{}, r.Cookie...)
			return true, nil
		}
		if !offersGroup(in.props, r.WantGroup) {
			return false, fmt.Errorf("ike: responder wants %v, which was not offered: %w", r.WantGroup, ErrUnsupported)
		}
		if _, err := curve(r.WantGroup); err != nil {
			return false, err
		}
		in.group = r.WantGroup
		return true, nil
	}
	if r.Error != 0 {
		return false, &NotifyError{Exchange: wire.ExchangeIKESAInit, Type: r.Error}
	}
	if !r.Accepted() {
		return false, fmt.Errorf("ike: IKE_SA_INIT response without SA, KE or Nonce: %w", wire.ErrTruncated)
	}
	s, err := SuiteOf(*r.Proposal)
	if err != nil {
		return false, err
	}
	if !Offers(in.props, s) {
		return false, fmt.Errorf("ike: responder chose %s, which was not offered: %w", s, ErrUnsupported)
	}
	if r.KE.Group != in.ks.Group || s.Group != in.ks.Group {
		return false, fmt.Errorf("ike: responder answered group %v/%v to a %v key share: %w", r.KE.Group, s.Group, in.ks.Group, ErrBadKeyShare)
	}
	shared, err := in.ks.Shared(r.KE.Data)
	if err != nil {
		return false, err
	}
	keys, err := DeriveKeys(s, in.ni, r.Nonce, shared, in.spiI, resp.SPIr)
	if err != nil {
		return false, err
	}
	if in.out, err = NewSK(s, keys.EI, keys.AI); err != nil {
		return false, err
	}
	if in.in, err = NewSK(s, keys.ER, keys.AR); err != nil {
		return false, err
	}
	in.suite, in.keys, in.spiR = s, keys, resp.SPIr
	in.nr = append([]byte{}, r.Nonce...)
	in.initReq = append([]byte{}, req...)
	in.initResp = append([]byte{}, respRaw...)
	in.childless = resp.Notify(wire.NotifyChildlessIKEv2Supported) != nil
	return false, nil
}

func offersGroup(props []wire.Proposal, g wire.DHGroup) bool {
	for _, p := range props {
		for _, t := range p.Transforms {
			if t.Type == wire.TransformDH && wire.DHGroup(t.ID) == g {
				return true
			}
		}
	}
	return false
}

// AuthRequest returns the IKE_AUTH request payloads: IDi, AUTH (RFC 7296
// §2.15 with the pre-shared key) and, unless the exchange is childless, a
// CHILD_SA proposal with traffic selectors covering the family of the IKE SA
// pair (the responder narrows them). The engine adds its MOBIKE notifies.
func (in *Initiator) AuthRequest(local, remote netip.AddrPort) ([]wire.Payload, error) {
	if in.keys == nil {
		return nil, ErrNoKeys
	}
	auth := PSKAuth(in.cfg.PSK, in.initReq, in.nr, in.keys.PI, in.cfg.ID)
	pl := []wire.Payload{in.cfg.ID.Payload(wire.PayloadIDi), AuthPayload(AuthSharedKey, auth)}
	want := in.cfg.Child == ChildAlways || (in.cfg.Child == ChildAuto && !in.childless)
	if !want {
		return pl, nil
	}
	spi := make([]byte, 4)
	if err := in.read(spi); err != nil {
		return nil, err
	}
	spi[0] |= 0x80 // SPIs below 256 are reserved
	in.child = Child{Proposed: true, SPIi: spi}
	v4 := local.Addr().Unmap().Is4()
	return append(pl, &wire.SA{Proposals: childProposals(spi)},
		TSPayload(wire.PayloadTSi, AnyTS(v4)), TSPayload(wire.PayloadTSr, AnyTS(v4))), nil
}

// childProposals is an ESP proposal list with AES-GCM-16 and AES-CBC with
// HMAC-SHA2-256-128, without extended sequence numbers.
func childProposals(spi []byte) []wire.Proposal {
	esn := wire.Transform{Type: wire.TransformESN, ID: 0}
	return []wire.Proposal{
		{Num: 1, Protocol: wire.ProtocolESP, SPI: spi, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.EncrAESGCM16, Attributes: []wire.Attribute{wire.KeyLength(128)}},
			{Type: wire.TransformENCR, ID: wire.EncrAESGCM16, Attributes: []wire.Attribute{wire.KeyLength(256)}},
			esn,
		}},
		{Num: 2, Protocol: wire.ProtocolESP, SPI: spi, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: []wire.Attribute{wire.KeyLength(128)}},
			{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: []wire.Attribute{wire.KeyLength(256)}},
			{Type: wire.TransformINTEG, ID: wire.IntegSHA256},
			esn,
		}},
	}
}

// AuthResponse verifies the responder's IDr and AUTH (RFC 7296 §2.15). A
// response without them fails with a *NotifyError naming the responder's
// error notify (AUTHENTICATION_FAILED, ...) when there is one. Errors about
// the CHILD_SA alone (TS_UNACCEPTABLE, NO_PROPOSAL_CHOSEN, ...) leave the IKE
// SA up (RFC 7296 §1.2) and are recorded in Child.
func (in *Initiator) AuthResponse(resp *wire.Message) error {
	if in.keys == nil {
		return ErrNoKeys
	}
	var idr, auth *wire.Raw
	var errType wire.NotifyType
	for _, p := range resp.Payloads {
		switch q := p.(type) {
		case *wire.Raw:
			switch q.Kind {
			case wire.PayloadIDr:
				idr = q
			case wire.PayloadAUTH:
				auth = q
			}
		case *wire.Notify:
			if q.Type.IsError() && errType == 0 {
				errType = q.Type
			}
		case *wire.SA:
			if len(q.Proposals) == 1 && q.Proposals[0].Protocol == wire.ProtocolESP {
				pr := q.Proposals[0]
				in.child.Accepted = &pr
			}
		}
	}
	if idr == nil || auth == nil {
		if errType != 0 {
			return &NotifyError{Exchange: wire.ExchangeIKEAuth, Type: errType}
		}
		return fmt.Errorf("%w: IKE_AUTH response without IDr and AUTH", ErrAuth)
	}
	id, err := ParseIDPayload(idr.Body)
	if err != nil {
		return err
	}
	want := PSKAuth(in.cfg.PSK, in.initResp, in.ni, in.keys.PR, id)
	if err := VerifyPSKAuth(auth.Body, want); err != nil {
		return err
	}
	in.peerID, in.authed = id, true
	in.child.Error = errType
	return nil
}

// Seal encodes m for the wire: IKE_SA_INIT in clear, every later message
// inside an Encrypted payload under the initiator's keys (this side is the
// original initiator, so requests and responses alike use SK_ei/SK_ai).
// AES-GCM IVs count up from 1 (RFC 5282 §3.1: unique per key); AES-CBC IVs
// are random.
func (in *Initiator) Seal(m *wire.Message) ([]byte, error) {
	if m.Exchange == wire.ExchangeIKESAInit {
		return m.Marshal()
	}
	if in.out == nil {
		return nil, ErrNoKeys
	}
	iv := make([]byte, in.out.IVLen())
	if in.suite.AEAD() {
		in.ivCounter++
		binary.BigEndian.PutUint64(iv, in.ivCounter)
	} else if err := in.read(iv); err != nil {
		return nil, err
	}
	return in.out.Seal(m.Header, m.Payloads, iv)
}

// Open decodes a datagram's IKE message (without the non-ESP marker):
// IKE_SA_INIT as is, everything else by checking and decrypting its
// Encrypted payload with the responder's keys.
func (in *Initiator) Open(b []byte) (*wire.Message, error) {
	h, err := wire.PeekHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Exchange == wire.ExchangeIKESAInit {
		return wire.Parse(b)
	}
	if in.in == nil {
		return nil, ErrNoKeys
	}
	return in.in.Open(b)
}

// Suite is the negotiated transform set (zero before IKE_SA_INIT ends).
func (in *Initiator) Suite() Suite { return in.suite }

// PeerID is the responder's verified identity (zero before IKE_AUTH ends).
func (in *Initiator) PeerID() ID { return in.peerID }

// Childless reports whether the responder announced RFC 6023 support.
func (in *Initiator) Childless() bool { return in.childless }

// Child describes the CHILD_SA negotiated in IKE_AUTH, if any.
func (in *Initiator) Child() Child { return in.child }

// Retries is the number of IKE_SA_INIT retries (COOKIE, INVALID_KE_PAYLOAD).
func (in *Initiator) Retries() int { return in.retries }

// Secrets are the inputs of the key derivation, for interop tests that
// derive the keys on their own and decrypt captured traffic.
type Secrets struct {
	Suite    Suite
	Priv     []byte // this side's private key
	Ni, Nr   []byte
	SPIi     wire.SPI
	SPIr     wire.SPI
	InitReq  []byte // IKE_SA_INIT request as sent
	InitResp []byte // IKE_SA_INIT response as received
}

// Secrets returns the key derivation inputs (after IKE_SA_INIT).
func (in *Initiator) Secrets() Secrets {
	s := Secrets{Suite: in.suite, Ni: in.ni, Nr: in.nr, SPIi: in.spiI, SPIr: in.spiR, InitReq: in.initReq, InitResp: in.initResp}
	if in.ks != nil {
		s.Priv = in.ks.Priv.Bytes()
	}
	return s
}
