// Package iketest is a fake IKEv2 responder with MOBIKE for tests: a gateway
// that answers IKE_SA_INIT, IKE_AUTH (pre-shared key) and INFORMATIONAL
// exchanges with real cryptography from mobike/ike, and whose deviations
// from RFC 4555 can be switched on one at a time (Behaviour), so tests of an
// initiator or of a conformance suite can see both a conforming and a
// misbehaving peer. It is sans-IO: Handle takes a datagram's IKE message and
// returns the response to send back to its source.
package iketest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/wire"
)

// Behaviour switches the gateway's deviations and options. The zero value
// is a conforming MOBIKE responder that announces no additional address.
type Behaviour struct {
	NoMOBIKE        bool         // never send MOBIKE_SUPPORTED
	Additional      []netip.Addr // announced with ADDITIONAL_*_ADDRESS in IKE_AUTH
	NoAddressList   bool         // neither ADDITIONAL_* nor NO_ADDITIONAL_ADDRESSES
	Childless       bool         // announce CHILDLESS_IKEV2_SUPPORTED (RFC 6023)
	RequireCookie   bool         // answer a first IKE_SA_INIT with a COOKIE
	Group           wire.DHGroup // answer INVALID_KE_PAYLOAD unless the KE uses it
	NoCookie2Echo   bool         // drop COOKIE2 from responses
	WrongCookie2    bool         // answer a different COOKIE2
	NoNATD          bool         // no NAT-D in INFORMATIONAL responses
	CheckNoNATs     bool         // UNEXPECTED_NAT_DETECTED on a NO_NATS_ALLOWED mismatch
	ReEncrypt       bool         // re-encrypt a response for a retransmitted request
	RefuseUpdates   bool         // UNACCEPTABLE_ADDRESSES to every UPDATE_SA_ADDRESSES
	RefuseLists     bool         // UNACCEPTABLE_ADDRESSES to every address list
	SilentInfo      bool         // never answer INFORMATIONAL requests
	IgnoreDelete    bool         // answer a Delete but keep the SA
	ImplicitUpdates bool         // move the SA to the source of any request (M51 violation)
	// AnswerFromSA asks the network layer to send INFORMATIONAL responses
	// from the IKE SA's own address instead of the request's destination
	// (libreswan 4.10 does that); see ReplySource.
	AnswerFromSA bool
}

// ReplySource is where the response to a request that arrived on dst must be
// sent from: dst, or with AnswerFromSA the IKE SA's address.
func (g *Gateway) ReplySource(b []byte, dst netip.AddrPort) netip.AddrPort {
	h, err := wire.PeekHeader(b)
	if err != nil || !g.B.AnswerFromSA || h.Exchange != wire.ExchangeInformational {
		return dst
	}
	if sa := g.sas[h.SPIi]; sa != nil && sa.Pair.Local.IsValid() {
		return sa.Pair.Local
	}
	return dst
}

// SA is the gateway's view of one IKE SA.
type SA struct {
	SPIi, SPIr  wire.SPI
	Suite       ike.Suite
	Established bool
	MOBIKE      bool
	Deleted     bool
	PeerID      ike.ID
	Pair        struct{ Local, Remote netip.AddrPort } // the IKE SA's addresses (M5, M20)
	PeerAddrs   []netip.Addr                           // the initiator's announced set
	Updates     int                                    // accepted UPDATE_SA_ADDRESSES
	Requests    []*wire.Message                        // every decrypted request, in order
	Child       *wire.Proposal                         // accepted CHILD_SA proposal

	ks         *ike.KeyShare
	ni, nr     []byte
	initReq    []byte
	initResp   []byte
	in, out    *ike.SK
	ivCounter  uint64
	stored     map[uint32][]byte
	storedMsgs map[uint32]*wire.Message
	keysPI     []byte
	keysPR     []byte
}

// Gateway is the fake responder. Fields are read-only after the first
// Handle, except through Behaviour.
type Gateway struct {
	PSK  []byte
	ID   ike.ID
	Rand io.Reader
	B    Behaviour

	sas    map[wire.SPI]*SA
	cookie []byte
}

// SAs returns the gateway's IKE SAs in the order they were created.
func (g *Gateway) SAs() []*SA {
	var out []*SA
	for _, sa := range g.sas {
		out = append(out, sa)
	}
	slices.SortFunc(out, func(a, b *SA) int { return bytes.Compare(a.SPIr[:], b.SPIr[:]) })
	return out
}

// SA returns the IKE SA with initiator SPI spiI.
func (g *Gateway) SA(spiI wire.SPI) *SA { return g.sas[spiI] }

// ErrIgnored means the gateway drops the message without answering.
var ErrIgnored = errors.New("iketest: message ignored")

// Handle processes one IKE message that arrived from src on dst (as the
// gateway sees the IP and UDP headers) and returns the response to send from
// dst to src.
func (g *Gateway) Handle(b []byte, src, dst netip.AddrPort) ([]byte, error) {
	if g.sas == nil {
		g.sas = map[wire.SPI]*SA{}
	}
	h, err := wire.PeekHeader(b)
	if err != nil {
		return nil, err
	}
	if h.IsResponse() {
		return nil, ErrIgnored // the gateway sends no requests
	}
	if h.Exchange == wire.ExchangeIKESAInit {
		return g.init(b, src, dst)
	}
	sa := g.sas[h.SPIi]
	if sa == nil || sa.SPIr != h.SPIr || sa.in == nil || sa.Deleted {
		return nil, ErrIgnored
	}
	if raw, ok := sa.stored[h.MessageID]; ok {
		if g.B.ReEncrypt {
			return sa.seal(sa.storedMsgs[h.MessageID])
		}
		return raw, nil // B5: the stored response, byte for byte
	}
	m, err := sa.in.Open(b)
	if err != nil {
		return nil, err
	}
	sa.Requests = append(sa.Requests, m)
	var pl []wire.Payload
	switch h.Exchange {
	case wire.ExchangeIKEAuth:
		pl, err = g.auth(sa, m, src, dst)
		if err != nil {
			return nil, err
		}
	case wire.ExchangeInformational:
		if g.B.SilentInfo {
			return nil, ErrIgnored
		}
		pl = g.info(sa, m, src, dst)
	default:
		return nil, ErrIgnored
	}
	if g.B.ImplicitUpdates && sa.Established {
		sa.Pair.Local, sa.Pair.Remote = dst, src
	}
	resp := &wire.Message{Header: wire.Header{SPIi: sa.SPIi, SPIr: sa.SPIr, Exchange: h.Exchange, Flags: wire.FlagResponse, MessageID: h.MessageID}, Payloads: pl}
	raw, err := sa.seal(resp)
	if err != nil {
		return nil, err
	}
	sa.stored[h.MessageID], sa.storedMsgs[h.MessageID] = raw, resp
	return raw, nil
}

func (sa *SA) seal(m *wire.Message) ([]byte, error) {
	iv := make([]byte, sa.out.IVLen())
	sa.ivCounter++
	binary.BigEndian.PutUint64(iv[len(iv)-8:], sa.ivCounter)
	return sa.out.Seal(m.Header, m.Payloads, iv)
}

func (g *Gateway) read(b []byte) error {
	_, err := io.ReadFull(g.Rand, b)
	return err
}

func (g *Gateway) init(b []byte, src, dst netip.AddrPort) ([]byte, error) {
	m, err := wire.Parse(b)
	if err != nil {
		return nil, err
	}
	if sa := g.sas[m.SPIi]; sa != nil {
		if bytes.Equal(sa.initReq, b) {
			return sa.initResp, nil // retransmission
		}
		return nil, ErrIgnored
	}
	answer := func(pl ...wire.Payload) ([]byte, error) {
		r := &wire.Message{Header: wire.Header{SPIi: m.SPIi, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse}, Payloads: pl}
		return r.Marshal()
	}
	if g.B.RequireCookie {
		if g.cookie == nil {
			g.cookie = make([]byte, 16)
			if err := g.read(g.cookie); err != nil {
				return nil, err
			}
		}
		if n := m.Notify(wire.NotifyCookie); n == nil || !bytes.Equal(n.Data, g.cookie) || m.Payloads[0] != wire.Payload(n) {
			return answer(&wire.Notify{Type: wire.NotifyCookie, Data: g.cookie})
		}
	}
	sa, _ := m.Find(wire.PayloadSA).(*wire.SA)
	ke, _ := m.Find(wire.PayloadKE).(*wire.KE)
	nonce, _ := m.Find(wire.PayloadNonce).(*wire.Nonce)
	if sa == nil || ke == nil || nonce == nil {
		return answer(wire.NotifyStatus(wire.NotifyInvalidSyntax))
	}
	if g.B.Group != 0 && ke.Group != g.B.Group {
		return answer(&wire.Notify{Type: wire.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(g.B.Group))})
	}
	num, suite, ok := choose(sa.Proposals, ke.Group)
	if !ok {
		return answer(wire.NotifyStatus(wire.NotifyNoProposalChosen))
	}
	ks, err := ike.NewKeyShare(suite.Group, g.Rand)
	if err != nil {
		return nil, err
	}
	st := &SA{SPIi: m.SPIi, Suite: suite, ks: ks, ni: nonce.Data, nr: make([]byte, 32), initReq: bytes.Clone(b),
		stored: map[uint32][]byte{}, storedMsgs: map[uint32]*wire.Message{}}
	if err := g.read(st.nr); err != nil {
		return nil, err
	}
	if err := g.read(st.SPIr[:]); err != nil {
		return nil, err
	}
	st.SPIr[0] |= 0x80
	shared, err := ks.Shared(ke.Data)
	if err != nil {
		return nil, err
	}
	keys, err := ike.DeriveKeys(suite, st.ni, st.nr, shared, st.SPIi, st.SPIr)
	if err != nil {
		return nil, err
	}
	if st.in, err = ike.NewSK(suite, keys.EI, keys.AI); err != nil {
		return nil, err
	}
	if st.out, err = ike.NewSK(suite, keys.ER, keys.AR); err != nil {
		return nil, err
	}
	accepted := ike.Proposal(suite)
	accepted.Num = num
	pl := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{accepted}}, &wire.KE{Group: suite.Group, Data: ks.Public()}, &wire.Nonce{Data: st.nr}}
	if m.Notify(wire.NotifyNATDetectionSourceIP) != nil {
		pl = append(pl, wire.NATDetectionSource(st.SPIi, st.SPIr, dst), wire.NATDetectionDestination(st.SPIi, st.SPIr, src))
	}
	if g.B.Childless {
		pl = append(pl, wire.NotifyStatus(wire.NotifyChildlessIKEv2Supported))
	}
	r := &wire.Message{Header: wire.Header{SPIi: st.SPIi, SPIr: st.SPIr, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse}, Payloads: pl}
	if st.initResp, err = r.Marshal(); err != nil {
		return nil, err
	}
	st.keysPI, st.keysPR = keys.PI, keys.PR
	g.sas[st.SPIi] = st
	return st.initResp, nil
}

// choose picks the first supported suite of the offer whose group is the
// key share's.
func choose(props []wire.Proposal, g wire.DHGroup) (uint8, ike.Suite, bool) {
	for _, p := range props {
		if p.Protocol != wire.ProtocolIKE {
			continue
		}
		var encrs []wire.Transform
		var integ []uint16
		var prf []uint16
		hasDH := false
		for _, t := range p.Transforms {
			switch t.Type {
			case wire.TransformENCR:
				encrs = append(encrs, t)
			case wire.TransformINTEG:
				integ = append(integ, t.ID)
			case wire.TransformPRF:
				prf = append(prf, t.ID)
			case wire.TransformDH:
				hasDH = hasDH || wire.DHGroup(t.ID) == g
			}
		}
		if !hasDH {
			continue
		}
		if len(integ) == 0 {
			integ = []uint16{wire.IntegNone}
		}
		for _, e := range encrs {
			kl, _ := e.KeyLength()
			for _, in := range integ {
				for _, pf := range prf {
					s := ike.Suite{Encr: e.ID, KeyBits: int(kl), Integ: in, PRF: pf, Group: g}
					if s.Validate() == nil {
						return p.Num, s, true
					}
				}
			}
		}
	}
	return 0, ike.Suite{}, false
}

func (g *Gateway) auth(sa *SA, m *wire.Message, src, dst netip.AddrPort) ([]wire.Payload, error) {
	if sa.Established {
		return nil, ErrIgnored
	}
	var idi, auth *wire.Raw
	var child *wire.SA
	var tsi, tsr *wire.Raw
	for _, p := range m.Payloads {
		switch q := p.(type) {
		case *wire.Raw:
			switch q.Kind {
			case wire.PayloadIDi:
				idi = q
			case wire.PayloadAUTH:
				auth = q
			case wire.PayloadTSi:
				tsi = q
			case wire.PayloadTSr:
				tsr = q
			}
		case *wire.SA:
			child = q
		}
	}
	if idi == nil || auth == nil {
		return []wire.Payload{wire.NotifyStatus(wire.NotifyAuthenticationFailed)}, nil
	}
	id, err := ike.ParseIDPayload(idi.Body)
	if err != nil {
		return []wire.Payload{wire.NotifyStatus(wire.NotifyAuthenticationFailed)}, nil
	}
	if ike.VerifyPSKAuth(auth.Body, ike.PSKAuth(g.PSK, sa.initReq, sa.nr, sa.keysPI, id)) != nil {
		return []wire.Payload{wire.NotifyStatus(wire.NotifyAuthenticationFailed)}, nil
	}
	sa.PeerID, sa.Established = id, true
	sa.Pair.Local, sa.Pair.Remote = dst, src // M5
	sa.MOBIKE = !g.B.NoMOBIKE && m.Notify(wire.NotifyMOBIKESupported) != nil
	sa.PeerAddrs = peerSet(m, src)
	pl := []wire.Payload{g.ID.Payload(wire.PayloadIDr), ike.AuthPayload(ike.AuthSharedKey, ike.PSKAuth(g.PSK, sa.initResp, sa.ni, sa.keysPR, g.ID))}
	if child != nil && len(child.Proposals) > 0 && tsi != nil && tsr != nil {
		p := child.Proposals[0]
		acc := wire.Proposal{Num: p.Num, Protocol: p.Protocol, SPI: []byte{0xc0, 0, 0, 1}}
		seen := map[wire.TransformType]bool{}
		for _, t := range p.Transforms {
			if !seen[t.Type] {
				seen[t.Type] = true
				acc.Transforms = append(acc.Transforms, t)
			}
		}
		sa.Child = &acc
		pl = append(pl, &wire.SA{Proposals: []wire.Proposal{acc}}, tsi, tsr)
	}
	if sa.MOBIKE {
		pl = append(pl, wire.NotifyStatus(wire.NotifyMOBIKESupported))
		if !g.B.NoAddressList {
			pl = append(pl, listPayloads(g.B.Additional)...)
		}
	}
	return pl, nil
}

func listPayloads(addrs []netip.Addr) []wire.Payload {
	var pl []wire.Payload
	for _, a := range addrs {
		if n, err := wire.AdditionalAddress(a); err == nil {
			pl = append(pl, n)
		}
	}
	if len(pl) == 0 {
		pl = append(pl, wire.NotifyStatus(wire.NotifyNoAdditionalAddresses))
	}
	return pl
}

// peerSet is the source plus the listed addresses, or nil without a list.
func peerSet(m *wire.Message, src netip.AddrPort) []netip.Addr {
	set := []netip.Addr{src.Addr()}
	list := false
	for _, n := range m.Notifies() {
		switch n.Type {
		case wire.NotifyNoAdditionalAddresses:
			list = true
		case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
			list = true
			if a, err := n.Address(); err == nil && !slices.Contains(set, a) {
				set = append(set, a)
			}
		}
	}
	if !list {
		return nil
	}
	return set
}

func (g *Gateway) info(sa *SA, m *wire.Message, src, dst netip.AddrPort) []wire.Payload {
	if d, ok := m.Find(wire.PayloadDelete).(*wire.Delete); ok && d.Protocol == wire.ProtocolIKE {
		sa.Deleted = !g.B.IgnoreDelete
		return nil
	}
	var cookie []wire.Payload
	if n := m.Notify(wire.NotifyCookie2); n != nil && !g.B.NoCookie2Echo {
		c := bytes.Clone(n.Data)
		if g.B.WrongCookie2 {
			c[0] ^= 0xff
		}
		cookie = []wire.Payload{&wire.Notify{Type: wire.NotifyCookie2, Data: c}}
	}
	if !sa.MOBIKE {
		return cookie
	}
	update := m.Notify(wire.NotifyUpdateSAAddresses) != nil
	set := peerSet(m, src)
	if n := m.Notify(wire.NotifyNoNATsAllowed); n != nil && g.B.CheckNoNATs && (update || set != nil) {
		s, d, err := n.NoNATsAllowedAddrs()
		if err != nil || s != src || d != dst {
			return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}, cookie...)
		}
	}
	if update {
		if g.B.RefuseUpdates {
			return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnacceptableAddresses)}, cookie...)
		}
		sa.Pair.Local, sa.Pair.Remote = dst, src // M20
		sa.Updates++
	}
	if set != nil {
		if g.B.RefuseLists && !update {
			return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnacceptableAddresses)}, cookie...)
		}
		sa.PeerAddrs = set
	}
	var pl []wire.Payload
	if m.Notify(wire.NotifyNATDetectionSourceIP) != nil && !g.B.NoNATD {
		pl = append(pl, wire.NATDetectionSource(sa.SPIi, sa.SPIr, dst), wire.NATDetectionDestination(sa.SPIi, sa.SPIr, src))
	}
	return append(pl, cookie...)
}

// String summarises an SA for test failures.
func (sa *SA) String() string {
	return fmt.Sprintf("sa %s/%s %s established=%t mobike=%t deleted=%t pair=%s<->%s updates=%d",
		sa.SPIi, sa.SPIr, sa.Suite, sa.Established, sa.MOBIKE, sa.Deleted, sa.Pair.Local, sa.Pair.Remote, sa.Updates)
}
