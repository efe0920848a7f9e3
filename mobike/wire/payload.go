package wire

import (
	"bytes"
	"encoding/binary"
)

// Payload is one payload of a message. The concrete types are *SA, *KE,
// *Nonce, *Notify, *Delete, *Encrypted and *Raw (every other type, kept as
// bytes). Decoders always produce pointers; encoders accept the same.
type Payload interface {
	PayloadType() PayloadType
	appendBody(b []byte) ([]byte, error)
}

// genericHeaderLen is the size of the generic payload header (RFC 7296 §3.2).
const genericHeaderLen = 4

// Raw is a payload this package does not decode (IDi, AUTH, CERTREQ, V,
// unknown non-critical types, ...). Body excludes the 4-octet generic header.
type Raw struct {
	Kind     PayloadType
	Critical bool
	Body     []byte
}

func (p *Raw) PayloadType() PayloadType { return p.Kind }

func (p *Raw) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }

// Encrypted is the SK payload (RFC 7296 §3.14), carried opaquely: Body is
// IV | ciphertext | ICV and FirstInner is the type of the first inner payload
// (the SK header's Next Payload field). It must be the last payload.
type Encrypted struct {
	FirstInner PayloadType
	Body       []byte
}

func (p *Encrypted) PayloadType() PayloadType { return PayloadEncrypted }

func (p *Encrypted) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }

// KE is the Key Exchange payload (RFC 7296 §3.4).
type KE struct {
	Group DHGroup
	Data  []byte
}

func (p *KE) PayloadType() PayloadType { return PayloadKE }

func (p *KE) appendBody(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(p.Group))
	b = append(b, 0, 0)
	return append(b, p.Data...), nil
}

// Nonce is the Nonce payload (RFC 7296 §3.9): 16 to 256 octets.
type Nonce struct{ Data []byte }

// Nonce length bounds (RFC 7296 §3.9).
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

func (p *Nonce) PayloadType() PayloadType { return PayloadNonce }

func (p *Nonce) appendBody(b []byte) ([]byte, error) {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		return b, ErrBadLength
	}
	return append(b, p.Data...), nil
}

// Delete is the Delete payload (RFC 7296 §3.11). Deleting the IKE SA is
// Protocol ProtocolIKE with SPISize 0 and no SPIs.
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

func (p *Delete) PayloadType() PayloadType { return PayloadDelete }

func (p *Delete) appendBody(b []byte) ([]byte, error) {
	if len(p.SPIs) > 0xffff {
		return b, ErrTooLong
	}
	b = append(b, byte(p.Protocol), p.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.SPIs)))
	for _, s := range p.SPIs {
		if len(s) != int(p.SPISize) {
			return b, ErrBadLength
		}
		b = append(b, s...)
	}
	return b, nil
}

// MarshalPayloads encodes a payload chain and returns the type of its first
// payload (for the IKE header's or SK payload's Next Payload field). An
// Encrypted payload may only be last.
func MarshalPayloads(ps []Payload) (PayloadType, []byte, error) {
	return appendPayloads(nil, ps)
}

func appendPayloads(b []byte, ps []Payload) (PayloadType, []byte, error) {
	if len(ps) == 0 {
		return PayloadNone, b, nil
	}
	for i, p := range ps {
		if p == nil {
			return PayloadNone, b, encErr("payload", ErrBadLength)
		}
		next := PayloadNone
		if i+1 < len(ps) {
			if ps[i+1] == nil {
				return PayloadNone, b, encErr("payload", ErrBadLength)
			}
			next = ps[i+1].PayloadType()
		}
		var flags byte
		switch q := p.(type) {
		case *Encrypted:
			if i != len(ps)-1 {
				return PayloadNone, b, encErr("payload SK", ErrSKNotLast)
			}
			next = q.FirstInner
		case *Raw:
			if q.Critical {
				flags = 0x80
			}
		}
		start := len(b)
		b = append(b, byte(next), flags, 0, 0)
		var err error
		b, err = p.appendBody(b)
		if err != nil {
			return PayloadNone, b, encErr("payload "+p.PayloadType().String(), err)
		}
		n := len(b) - start
		if n > 0xffff {
			return PayloadNone, b, encErr("payload "+p.PayloadType().String(), ErrTooLong)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	}
	return ps[0].PayloadType(), b, nil
}

// ParsePayloads decodes a payload chain whose first payload has type first,
// e.g. the decrypted inner chain of an SK payload. The chain must fill b
// exactly. Offsets in errors are relative to b.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return parseChain(first, bytes.Clone(b), 0)
}

func parseChain(next PayloadType, b []byte, base int) ([]Payload, error) {
	var ps []Payload
	off := 0
	for next != PayloadNone {
		at := base + off
		if len(b)-off < genericHeaderLen {
			return nil, perr(base+len(b), next, "payload header", ErrTruncated)
		}
		h := b[off : off+genericHeaderLen]
		n := int(binary.BigEndian.Uint16(h[2:4]))
		if n < genericHeaderLen || n > len(b)-off {
			return nil, perr(at+2, next, "payload length", ErrBadLength)
		}
		body := b[off+genericHeaderLen : off+n]
		bodyAt := at + genericHeaderLen
		critical := h[1]&0x80 != 0
		following := PayloadType(h[0])
		var p Payload
		var err error
		switch next {
		case PayloadSA:
			p, err = parseSA(body, bodyAt)
		case PayloadKE:
			p, err = parseKE(body, bodyAt)
		case PayloadNonce:
			p, err = parseNonce(body, bodyAt)
		case PayloadNotify:
			p, err = parseNotify(body, bodyAt)
		case PayloadDelete:
			p, err = parseDelete(body, bodyAt)
		case PayloadEncrypted:
			if off+n != len(b) {
				return nil, perr(at, next, "payload", ErrSKNotLast)
			}
			p = &Encrypted{FirstInner: following, Body: body}
			following = PayloadNone
		default:
			if _, known := payloadNames[next]; !known && critical {
				return nil, perr(at+1, next, "payload", ErrUnsupportedCritical)
			}
			p = &Raw{Kind: next, Critical: critical, Body: body}
		}
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
		off += n
		next = following
	}
	if off != len(b) {
		return nil, perr(base+off, PayloadNone, "payload chain", ErrTrailingData)
	}
	return ps, nil
}

func parseKE(b []byte, at int) (*KE, error) {
	if len(b) < 4 {
		return nil, perr(at+len(b), PayloadKE, "key exchange", ErrTruncated)
	}
	return &KE{Group: DHGroup(binary.BigEndian.Uint16(b)), Data: b[4:]}, nil
}

func parseNonce(b []byte, at int) (*Nonce, error) {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return nil, perr(at, PayloadNonce, "nonce", ErrBadLength)
	}
	return &Nonce{Data: b}, nil
}

func parseDelete(b []byte, at int) (*Delete, error) {
	if len(b) < 4 {
		return nil, perr(at+len(b), PayloadDelete, "delete", ErrTruncated)
	}
	d := &Delete{Protocol: ProtocolID(b[0]), SPISize: b[1]}
	num := int(binary.BigEndian.Uint16(b[2:4]))
	if len(b)-4 != num*int(d.SPISize) {
		return nil, perr(at+2, PayloadDelete, "delete", ErrBadLength)
	}
	for i := range num {
		s := 4 + i*int(d.SPISize)
		d.SPIs = append(d.SPIs, b[s:s+int(d.SPISize)])
	}
	return d, nil
}

// EncodeError is returned by encoders for values that cannot be put on the
// wire (bad lengths, SK not last, ...). It wraps one of the sentinels.
type EncodeError struct {
	What string
	Err  error
}

func (e *EncodeError) Error() string { return "ike: encode " + e.What + ": " + e.Err.Error() }

func (e *EncodeError) Unwrap() error { return e.Err }

func encErr(what string, err error) error { return &EncodeError{What: what, Err: err} }
