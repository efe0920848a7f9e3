package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// SA is the Security Association payload (RFC 7296 §3.3).
type SA struct{ Proposals []Proposal }

// Proposal is one proposal substructure. Num starts at 1 in a request; a
// response carries the number of the accepted proposal.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte // empty in an IKE_SA_INIT proposal
	Transforms []Transform
}

// Transform is one transform substructure.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute. TV attributes (the only kind RFC 7296
// defines, e.g. Key Length) carry Value; TLV attributes carry Data.
type Attribute struct {
	Type  uint16 // without the AF bit
	TV    bool
	Value uint16
	Data  []byte
}

// KeyLength is the Key Length attribute for a cipher with variable key size.
func KeyLength(bits uint16) Attribute {
	return Attribute{Type: AttrKeyLength, TV: true, Value: bits}
}

// KeyLength returns the transform's Key Length attribute.
func (t Transform) KeyLength() (uint16, bool) {
	for _, a := range t.Attributes {
		if a.Type == AttrKeyLength && a.TV {
			return a.Value, true
		}
	}
	return 0, false
}

// Get returns the first transform of type tt in the proposal.
func (p *Proposal) Get(tt TransformType) (Transform, bool) {
	for _, t := range p.Transforms {
		if t.Type == tt {
			return t, true
		}
	}
	return Transform{}, false
}

func (p Proposal) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "#%d %s", p.Num, p.Protocol)
	for _, t := range p.Transforms {
		fmt.Fprintf(&sb, " %s=%d", t.Type, t.ID)
		if kl, ok := t.KeyLength(); ok {
			fmt.Fprintf(&sb, "/%d", kl)
		}
	}
	return sb.String()
}

// DefaultIKEProposal is the IKE proposal the probe offers: ENCR_AES_GCM_16
// with 128-bit keys, PRF_HMAC_SHA2_256 and Curve25519 (group 31), i.e.
// strongSwan's aes128gcm16-prfsha256-x25519.
func DefaultIKEProposal() Proposal {
	return Proposal{
		Num:      1,
		Protocol: ProtocolIKE,
		Transforms: []Transform{
			{Type: TransformENCR, ID: EncrAESGCM16, Attributes: []Attribute{KeyLength(128)}},
			{Type: TransformPRF, ID: PRFHMACSHA256},
			{Type: TransformDH, ID: uint16(DHCurve25519)},
		},
	}
}

func (p *SA) PayloadType() PayloadType { return PayloadSA }

func (p *SA) appendBody(b []byte) ([]byte, error) {
	for i, pr := range p.Proposals {
		if len(pr.SPI) > 0xff || len(pr.Transforms) > 0xff {
			return b, ErrTooLong
		}
		start := len(b)
		last := byte(2)
		if i == len(p.Proposals)-1 {
			last = 0
		}
		b = append(b, last, 0, 0, 0, pr.Num, byte(pr.Protocol), byte(len(pr.SPI)), byte(len(pr.Transforms)))
		b = append(b, pr.SPI...)
		for j, t := range pr.Transforms {
			ts := len(b)
			tl := byte(3)
			if j == len(pr.Transforms)-1 {
				tl = 0
			}
			b = append(b, tl, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			for _, a := range t.Attributes {
				if a.Type > 0x7fff {
					return b, ErrBadAttribute
				}
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, a.Type|0x8000)
					b = binary.BigEndian.AppendUint16(b, a.Value)
					continue
				}
				if len(a.Data) > 0xffff {
					return b, ErrTooLong
				}
				b = binary.BigEndian.AppendUint16(b, a.Type)
				b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
				b = append(b, a.Data...)
			}
			if len(b)-ts > 0xffff {
				return b, ErrTooLong
			}
			binary.BigEndian.PutUint16(b[ts+2:], uint16(len(b)-ts))
		}
		if len(b)-start > 0xffff {
			return b, ErrTooLong
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b, nil
}

// parseSA decodes an SA payload body starting at absolute offset at.
func parseSA(b []byte, at int) (*SA, error) {
	sa := &SA{}
	off := 0
	for off < len(b) {
		if len(b)-off < 8 {
			return nil, perr(at+len(b), PayloadSA, "proposal", ErrTruncated)
		}
		h := b[off:]
		n := int(binary.BigEndian.Uint16(h[2:4]))
		if n < 8 || n > len(b)-off {
			return nil, perr(at+off+2, PayloadSA, "proposal length", ErrBadLength)
		}
		switch {
		case h[0] == 0 && off+n != len(b):
			return nil, perr(at+off+n, PayloadSA, "proposal", ErrTrailingData)
		case h[0] == 2 && off+n == len(b):
			return nil, perr(at+len(b), PayloadSA, "proposal", ErrTruncated)
		case h[0] != 0 && h[0] != 2:
			return nil, perr(at+off, PayloadSA, "proposal last-substruc", ErrBadLength)
		}
		pr := Proposal{Num: h[4], Protocol: ProtocolID(h[5])}
		spiLen, numT := int(h[6]), int(h[7])
		body := h[8:n]
		bodyAt := at + off + 8
		if spiLen > len(body) {
			return nil, perr(at+off+6, PayloadSA, "proposal spi", ErrBadLength)
		}
		if spiLen > 0 {
			pr.SPI = body[:spiLen]
		}
		ts, err := parseTransforms(body[spiLen:], bodyAt+spiLen)
		if err != nil {
			return nil, err
		}
		if len(ts) != numT {
			return nil, perr(at+off+7, PayloadSA, "proposal transform count", ErrBadLength)
		}
		pr.Transforms = ts
		sa.Proposals = append(sa.Proposals, pr)
		off += n
	}
	return sa, nil
}

func parseTransforms(b []byte, at int) ([]Transform, error) {
	var ts []Transform
	off := 0
	for off < len(b) {
		if len(b)-off < 8 {
			return nil, perr(at+len(b), PayloadSA, "transform", ErrTruncated)
		}
		h := b[off:]
		n := int(binary.BigEndian.Uint16(h[2:4]))
		if n < 8 || n > len(b)-off {
			return nil, perr(at+off+2, PayloadSA, "transform length", ErrBadLength)
		}
		switch {
		case h[0] == 0 && off+n != len(b):
			return nil, perr(at+off+n, PayloadSA, "transform", ErrTrailingData)
		case h[0] == 3 && off+n == len(b):
			return nil, perr(at+len(b), PayloadSA, "transform", ErrTruncated)
		case h[0] != 0 && h[0] != 3:
			return nil, perr(at+off, PayloadSA, "transform last-substruc", ErrBadLength)
		}
		t := Transform{Type: TransformType(h[4]), ID: binary.BigEndian.Uint16(h[6:8])}
		ab := h[8:n]
		aAt := at + off + 8
		for i := 0; i < len(ab); {
			if len(ab)-i < 4 {
				return nil, perr(aAt+len(ab), PayloadSA, "attribute", ErrTruncated)
			}
			typ := binary.BigEndian.Uint16(ab[i:])
			v := binary.BigEndian.Uint16(ab[i+2:])
			if typ&0x8000 != 0 {
				t.Attributes = append(t.Attributes, Attribute{Type: typ & 0x7fff, TV: true, Value: v})
				i += 4
				continue
			}
			if int(v) > len(ab)-i-4 {
				return nil, perr(aAt+i+2, PayloadSA, "attribute", ErrBadAttribute)
			}
			t.Attributes = append(t.Attributes, Attribute{Type: typ, Data: ab[i+4 : i+4+int(v)]})
			i += 4 + int(v)
		}
		ts = append(ts, t)
		off += n
	}
	return ts, nil
}
