package wire

import (
	"bytes"
	"fmt"
	"strings"
)

// Message is one IKE message: the header and its payload chain. The header's
// NextPayload and Length are derived from the payloads by Marshal and set by
// Parse.
type Message struct {
	Header
	Payloads []Payload
}

// Marshal encodes the message. It computes Next Payload fields and the Length;
// the receiver is not modified.
func (m *Message) Marshal() ([]byte, error) {
	b := make([]byte, HeaderLen, 256)
	first, b, err := appendPayloads(b, m.Payloads)
	if err != nil {
		return nil, err
	}
	h := m.Header
	h.NextPayload = first
	h.Length = uint32(len(b))
	h.appendTo(b[:0])
	return b, nil
}

// Parse decodes one IKE message (without a non-ESP marker; see
// StripNonESPMarker). The Length field must match len(b). The returned
// message does not alias b.
func Parse(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(h.Length) != int64(len(b)) {
		if int64(h.Length) > int64(len(b)) {
			return nil, perr(24, PayloadNone, "header length", ErrTruncated)
		}
		return nil, perr(24, PayloadNone, "header length", ErrBadLength)
	}
	b = bytes.Clone(b)
	ps, err := parseChain(h.NextPayload, b[HeaderLen:], HeaderLen)
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// PeekHeader returns the SPIs, exchange, flags and message ID of b without
// decoding payloads; a cheap way to route a datagram to its SA.
func PeekHeader(b []byte) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	if uint64(h.Length) < HeaderLen {
		return h, perr(24, PayloadNone, "header length", ErrBadLength)
	}
	return h, nil
}

// Notifies returns the message's Notify payloads in order.
func (m *Message) Notifies() []*Notify {
	var ns []*Notify
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok {
			ns = append(ns, n)
		}
	}
	return ns
}

// Notify returns the first Notify of type t, or nil.
func (m *Message) Notify(t NotifyType) *Notify {
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok && n.Type == t {
			return n
		}
	}
	return nil
}

// Find returns the first payload of type t, or nil.
func (m *Message) Find(t PayloadType) Payload {
	for _, p := range m.Payloads {
		if p.PayloadType() == t {
			return p
		}
	}
	return nil
}

// String renders the message on one line for logs and golden files, e.g.
// "IKE_SA_INIT R mid=0 0102030405060708/1112131415161718 [SA(#1 IKE ENCR=20/128 PRF=5 DH=31) KE(CURVE_25519) No N(NAT_DETECTION_SOURCE_IP ...)]".
func (m *Message) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s mid=%d %s/%s [", m.Exchange, m.Flags, m.MessageID, m.SPIi, m.SPIr)
	for i, p := range m.Payloads {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(payloadString(p))
	}
	sb.WriteByte(']')
	return sb.String()
}

func payloadString(p Payload) string {
	switch q := p.(type) {
	case *SA:
		ps := make([]string, len(q.Proposals))
		for i, pr := range q.Proposals {
			ps[i] = pr.String()
		}
		return "SA(" + strings.Join(ps, ", ") + ")"
	case *KE:
		return fmt.Sprintf("KE(%s %d)", q.Group, len(q.Data))
	case *Nonce:
		return fmt.Sprintf("No(%d)", len(q.Data))
	case *Notify:
		return q.String()
	case *Delete:
		return fmt.Sprintf("D(%s %d)", q.Protocol, len(q.SPIs))
	case *Encrypted:
		return fmt.Sprintf("SK(%s %d)", q.FirstInner, len(q.Body))
	case *Raw:
		return fmt.Sprintf("%s(%d)", q.Kind, len(q.Body))
	}
	return p.PayloadType().String()
}
