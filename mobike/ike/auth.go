package ike

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mobiked/mobiked/mobike/wire"
)

// IDType is the ID Type of an IDi/IDr payload (RFC 7296 §3.5).
type IDType uint8

const (
	IDIPv4  IDType = 1
	IDFQDN  IDType = 2
	IDEmail IDType = 3 // ID_RFC822_ADDR
	IDIPv6  IDType = 5
	IDKeyID IDType = 11
)

func (t IDType) String() string {
	switch t {
	case IDIPv4:
		return "ipv4"
	case IDFQDN:
		return "fqdn"
	case IDEmail:
		return "rfc822"
	case IDIPv6:
		return "ipv6"
	case IDKeyID:
		return "keyid"
	}
	return "id-type(" + strconv.Itoa(int(t)) + ")"
}

// ID is an IKE identity.
type ID struct {
	Type IDType
	Data []byte
}

// ErrBadID is returned for identities that cannot be parsed or encoded.
var ErrBadID = errors.New("ike: bad identity")

// ParseID reads an identity the way strongSwan writes them: an IP address
// (ID_IPV4_ADDR, ID_IPV6_ADDR); "keyid:HEX" or "@#HEX" (ID_KEY_ID); "@name"
// or "fqdn:name" (ID_FQDN, verbatim); "user@domain" (ID_RFC822_ADDR);
// anything else is an ID_FQDN.
func ParseID(s string) (ID, error) {
	switch {
	case s == "":
		return ID{}, fmt.Errorf("%w: empty", ErrBadID)
	case strings.HasPrefix(s, "keyid:") || strings.HasPrefix(s, "@#"):
		h := strings.TrimPrefix(strings.TrimPrefix(s, "keyid:"), "@#")
		b, err := hex.DecodeString(h)
		if err != nil || len(b) == 0 {
			return ID{}, fmt.Errorf("%w: key id %q is not hex", ErrBadID, h)
		}
		return ID{Type: IDKeyID, Data: b}, nil
	case strings.HasPrefix(s, "fqdn:"):
		return fqdnID(strings.TrimPrefix(s, "fqdn:"))
	case strings.HasPrefix(s, "@"):
		return fqdnID(s[1:])
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return AddrID(a), nil
	}
	if strings.Contains(s, "@") {
		return ID{Type: IDEmail, Data: []byte(s)}, nil
	}
	return fqdnID(s)
}

func fqdnID(s string) (ID, error) {
	if s == "" {
		return ID{}, fmt.Errorf("%w: empty name", ErrBadID)
	}
	return ID{Type: IDFQDN, Data: []byte(s)}, nil
}

// AddrID is the ID_IPV4_ADDR or ID_IPV6_ADDR identity of a.
func AddrID(a netip.Addr) ID {
	a = a.Unmap()
	if a.Is4() {
		return ID{Type: IDIPv4, Data: a.AsSlice()}
	}
	return ID{Type: IDIPv6, Data: a.AsSlice()}
}

func (id ID) String() string {
	switch id.Type {
	case IDIPv4, IDIPv6:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case IDFQDN, IDEmail:
		return string(id.Data)
	case IDKeyID:
		return "keyid:" + hex.EncodeToString(id.Data)
	}
	return id.Type.String() + ":" + hex.EncodeToString(id.Data)
}

// body is RestOfInitIDPayload / RestOfRespIDPayload: the ID payload after its
// generic header (ID Type, three reserved octets, data).
func (id ID) body() []byte {
	return append([]byte{byte(id.Type), 0, 0, 0}, id.Data...)
}

// Payload is the IDi (initiator) or IDr payload carrying id.
func (id ID) Payload(kind wire.PayloadType) *wire.Raw {
	return &wire.Raw{Kind: kind, Body: id.body()}
}

// ParseIDPayload decodes the body of an IDi/IDr payload.
func ParseIDPayload(body []byte) (ID, error) {
	if len(body) < 5 {
		return ID{}, fmt.Errorf("%w: ID payload of %d octets", ErrBadID, len(body))
	}
	return ID{Type: IDType(body[0]), Data: append([]byte{}, body[4:]...)}, nil
}

// AuthSharedKey is the Shared Key Message Integrity Code auth method (2).
const AuthSharedKey = 2

// keyPad is the fixed string of RFC 7296 §2.15.
const keyPad = "Key Pad for IKEv2"

// PSKAuth computes the AUTH data of a peer that authenticates with a
// pre-shared key (RFC 7296 §2.15):
//
//	AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//	SignedOctets = RealMessage | Nonce of the other peer | prf(SK_p, RestOfIDPayload)
//
// realMsg is the sender's IKE_SA_INIT message as sent (message 1 for the
// initiator, 2 for the responder), nonce the other side's Nonce Data, skP the
// sender's SK_pi or SK_pr.
func PSKAuth(psk, realMsg, nonce, skP []byte, id ID) []byte {
	signed := append(append(append([]byte{}, realMsg...), nonce...), PRF(skP, id.body())...)
	return PRF(PRF(psk, []byte(keyPad)), signed)
}

// AuthPayload is the AUTH payload with method and data.
func AuthPayload(method uint8, data []byte) *wire.Raw {
	return &wire.Raw{Kind: wire.PayloadAUTH, Body: append([]byte{method, 0, 0, 0}, data...)}
}

// ErrAuth reports an AUTH payload that is missing or does not verify.
var ErrAuth = errors.New("ike: authentication failed")

// VerifyPSKAuth checks the body of the peer's AUTH payload against the
// expected PSK AUTH data.
func VerifyPSKAuth(authBody, want []byte) error {
	if len(authBody) < 5 {
		return fmt.Errorf("%w: AUTH payload of %d octets", ErrAuth, len(authBody))
	}
	if authBody[0] != AuthSharedKey {
		return fmt.Errorf("%w: auth method %d, want shared key (2)", ErrAuth, authBody[0])
	}
	if !hmac.Equal(authBody[4:], want) {
		return fmt.Errorf("%w: AUTH data does not match the pre-shared key", ErrAuth)
	}
	return nil
}
