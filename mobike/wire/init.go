package wire

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// InitRequest describes an IKE_SA_INIT request (RFC 7296 §1.2).
type InitRequest struct {
	SPIi      SPI
	Proposals []Proposal     // DefaultIKEProposal() when empty
	Group     DHGroup        // of KeyShare; DHCurve25519 when zero
	KeyShare  []byte         // public key (32 octets for X25519)
	Nonce     []byte         // 16..256 octets
	Local     netip.AddrPort // where the request is sent from (NAT_DETECTION_SOURCE_IP)
	Remote    netip.AddrPort // where it is sent to (NAT_DETECTION_DESTINATION_IP)
	Cookie    []byte         // from a COOKIE response; sent as the first payload
	Notifies  []*Notify      // extra status notifies appended at the end
}

// Message builds the request (message ID 0, I flag set, SPIr zero). NAT-D
// notifies are included when Local and Remote are valid.
func (r *InitRequest) Message() *Message {
	m := &Message{Header: Header{SPIi: r.SPIi, Exchange: ExchangeIKESAInit, Flags: FlagInitiator}}
	if r.Cookie != nil {
		m.Payloads = append(m.Payloads, &Notify{Type: NotifyCookie, Data: r.Cookie})
	}
	props := r.Proposals
	if len(props) == 0 {
		props = []Proposal{DefaultIKEProposal()}
	}
	g := r.Group
	if g == 0 {
		g = DHCurve25519
	}
	m.Payloads = append(m.Payloads, &SA{Proposals: props}, &KE{Group: g, Data: r.KeyShare}, &Nonce{Data: r.Nonce})
	if r.Local.IsValid() && r.Remote.IsValid() {
		m.Payloads = append(m.Payloads,
			NATDetectionSource(r.SPIi, SPI{}, r.Local),
			NATDetectionDestination(r.SPIi, SPI{}, r.Remote))
	}
	for _, n := range r.Notifies {
		m.Payloads = append(m.Payloads, n)
	}
	return m
}

// GenerateX25519 makes an ephemeral Curve25519 key pair for the KE payload.
func GenerateX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand)
}

// ErrUnsupportedGroup is returned by GenerateKeyShare for groups without an
// implementation here.
var ErrUnsupportedGroup = errors.New("unsupported DH group")

// GenerateKeyShare makes an ephemeral key pair of group g and returns it with
// its KE payload data: the 32-octet public key for Curve25519 (RFC 8031) and
// x | y without the point-format octet for the NIST curves (RFC 5903).
func GenerateKeyShare(g DHGroup, rand io.Reader) (*ecdh.PrivateKey, []byte, error) {
	var c ecdh.Curve
	switch g {
	case DHCurve25519:
		c = ecdh.X25519()
	case DHECP256:
		c = ecdh.P256()
	case DHECP384:
		c = ecdh.P384()
	default:
		return nil, nil, fmt.Errorf("ike: key share for %v: %w", g, ErrUnsupportedGroup)
	}
	k, err := c.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("ike: key share for %v: %w", g, err)
	}
	pub := k.PublicKey().Bytes()
	if g != DHCurve25519 {
		pub = pub[1:] // drop the 0x04 uncompressed-point octet
	}
	return k, pub, nil
}

// InitResponse is what an IKE_SA_INIT response says, decoded by
// ParseInitResponse. A responder either accepts (Proposal, KE, Nonce set) or
// answers with a single notify: Error (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD
// with WantGroup, ...) or COOKIE (Cookie set; retry with it).
type InitResponse struct {
	SPIi, SPIr SPI
	Proposal   *Proposal // the accepted proposal
	KE         *KE
	Nonce      []byte
	NATDSource [][20]byte // NAT_DETECTION_SOURCE_IP hashes
	NATDDest   [][20]byte // NAT_DETECTION_DESTINATION_IP hashes
	Cookie     []byte
	Error      NotifyType // first error notify, 0 if none
	WantGroup  DHGroup    // from INVALID_KE_PAYLOAD
	Notifies   []*Notify  // every notify, in order
}

// Accepted reports whether the responder accepted the proposal (no error, no
// cookie request, and SA, KE and Nonce present).
func (r *InitResponse) Accepted() bool {
	return r.Error == 0 && r.Cookie == nil && r.Proposal != nil && r.KE != nil && r.Nonce != nil
}

// ParseInitResponse interprets m as an IKE_SA_INIT response. It fails with
// ErrNotInitResponse when m is not one, and with a
// wrapped ErrBadNotifyData or ErrBadLength when a notify or the SA is malformed.
func ParseInitResponse(m *Message) (*InitResponse, error) {
	if m.Exchange != ExchangeIKESAInit || !m.IsResponse() || m.MessageID != 0 {
		return nil, fmt.Errorf("ike: %s %s: %w", m.Exchange, m.Flags, ErrNotInitResponse)
	}
	r := &InitResponse{SPIi: m.SPIi, SPIr: m.SPIr}
	for _, p := range m.Payloads {
		switch q := p.(type) {
		case *SA:
			if len(q.Proposals) != 1 {
				return nil, fmt.Errorf("ike: IKE_SA_INIT response: %d proposals: %w", len(q.Proposals), ErrBadLength)
			}
			pr := q.Proposals[0]
			r.Proposal = &pr
		case *KE:
			r.KE = q
		case *Nonce:
			r.Nonce = q.Data
		case *Notify:
			r.Notifies = append(r.Notifies, q)
			if err := q.Validate(); err != nil {
				return nil, fmt.Errorf("ike: IKE_SA_INIT response: %w", err)
			}
			switch q.Type {
			case NotifyNATDetectionSourceIP:
				h, _ := q.NATHash()
				r.NATDSource = append(r.NATDSource, h)
			case NotifyNATDetectionDestinationIP:
				h, _ := q.NATHash()
				r.NATDDest = append(r.NATDDest, h)
			case NotifyCookie:
				r.Cookie = q.Data
			case NotifyInvalidKEPayload:
				r.WantGroup, _ = q.InvalidKEGroup()
			}
			if q.Type.IsError() && r.Error == 0 {
				r.Error = q.Type
			}
		}
	}
	return r, nil
}

// NATResult is the outcome of RFC 7296 §2.23 NAT detection on a response.
type NATResult struct {
	Checked   bool // the response carried both NAT-D notifies
	LocalNAT  bool // our address/port was translated (destination hash mismatch)
	RemoteNAT bool // no source hash matches the observed peer address; unreliable:
	// strongSwan fakes it when it forces UDP encapsulation
}

// DetectNAT checks the response's NAT-D hashes. local is the address and port
// the response was received on (the request's source), remote the address and
// port it came from. The hashes are over the response's SPIi and SPIr.
func (r *InitResponse) DetectNAT(local, remote netip.AddrPort) NATResult {
	if len(r.NATDDest) == 0 || len(r.NATDSource) == 0 {
		return NATResult{}
	}
	res := NATResult{Checked: true, LocalNAT: true, RemoteNAT: true}
	want := NATDetectionHash(r.SPIi, r.SPIr, local)
	for _, h := range r.NATDDest {
		if h == want {
			res.LocalNAT = false
		}
	}
	want = NATDetectionHash(r.SPIi, r.SPIr, remote)
	for _, h := range r.NATDSource {
		if h == want {
			res.RemoteNAT = false
		}
	}
	return res
}
