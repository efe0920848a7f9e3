package proto

import (
	"net/netip"
	"strconv"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Crypto is the cryptographic half of an IKE SA, supplied by the caller
// (mobike/ike.Initiator implements it for the initiator role). With a Crypto
// the engine runs real exchanges: IKE_SA_INIT carries SA, KE and Nonce and
// may be retried (COOKIE, INVALID_KE_PAYLOAD), IKE_AUTH carries IDi and AUTH,
// and every message is encoded once by Seal, so a retransmission or a
// re-sent response is byte-identical (B5). Received messages must be
// decrypted before Handle (Packet.Msg holds the inner payloads) and carry
// the datagram's bytes in Packet.Raw. Without a Crypto the engine runs its
// reduced model (see the package documentation).
//
// Like the engine, an implementation does no I/O.
type Crypto interface {
	// InitRequest returns the IKE_SA_INIT request payloads; natd are the
	// engine's NAT detection notifies, to be placed after the Nonce.
	InitRequest(spiI wire.SPI, natd []wire.Payload) ([]wire.Payload, error)
	// InitResponse processes the IKE_SA_INIT response to the request
	// encoded as req. retry asks for a new IKE_SA_INIT request (COOKIE,
	// INVALID_KE_PAYLOAD); an error fails the IKE SA.
	InitResponse(req []byte, resp *wire.Message, respRaw []byte) (retry bool, err error)
	// AuthRequest returns the IKE_AUTH request payloads (IDi, AUTH and a
	// CHILD_SA proposal or none); the engine adds its MOBIKE notifies. The
	// pair is the one the request is sent on.
	AuthRequest(local, remote netip.AddrPort) ([]wire.Payload, error)
	// AuthResponse checks the IKE_AUTH response; an error fails the IKE SA.
	AuthResponse(resp *wire.Message) error
	// Seal encodes a message for the wire.
	Seal(m *wire.Message) ([]byte, error)
}

// CloseCause says why an IKE SA closed.
type CloseCause uint8

const (
	CloseTimeout         CloseCause = iota + 1 // a request got no response (B6)
	CloseHandshake                             // IKE_SA_INIT or IKE_AUTH failed
	CloseUnexpectedNAT                         // UNEXPECTED_NAT_DETECTED in IKE_AUTH (M56)
	CloseCookie2Mismatch                       // a response's COOKIE2 differs from ours (M43)
	CloseRRFailed                              // a return routability check got no answer
	CloseDeletedByPeer                         // the peer deleted the IKE SA (B2)
	CloseDeleted                               // our Delete was answered
	CloseInvalidSyntax                         // INVALID_SYNTAX in a response (RFC 7296 §2.21.3)
	CloseInternal                              // the random source or Seal failed
)

func (c CloseCause) String() string {
	switch c {
	case CloseTimeout:
		return "timeout"
	case CloseHandshake:
		return "handshake-failed"
	case CloseUnexpectedNAT:
		return "unexpected-nat"
	case CloseCookie2Mismatch:
		return "cookie2-mismatch"
	case CloseRRFailed:
		return "rr-failed"
	case CloseDeletedByPeer:
		return "deleted-by-peer"
	case CloseDeleted:
		return "deleted"
	case CloseInvalidSyntax:
		return "invalid-syntax"
	case CloseInternal:
		return "internal-error"
	}
	return "close-cause(" + strconv.Itoa(int(c)) + ")"
}
