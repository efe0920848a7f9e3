package ike

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/mobiked/mobiked/mobike/wire"
)

// ErrUnsupported is returned for transforms, groups or ID types this package
// does not implement.
var ErrUnsupported = errors.New("ike: unsupported")

// Suite is the transform set of an IKE SA (RFC 7296 §3.3.2): an AEAD cipher
// (AES-GCM with a 16-octet ICV) without integrity transform, or AES-CBC with
// HMAC-SHA2-256-128; PRF HMAC-SHA2-256; Curve25519 or ECP-256.
type Suite struct {
	Encr    uint16 // wire.EncrAESGCM16 or wire.EncrAESCBC
	KeyBits int    // 128 or 256 (and 192 for CBC)
	Integ   uint16 // wire.IntegSHA256, wire.IntegNone with an AEAD
	PRF     uint16 // wire.PRFHMACSHA256
	Group   wire.DHGroup
}

// String names the suite the way strongSwan's proposal strings do, e.g.
// "aes128gcm16-prfsha256-x25519" or "aes256-sha256-prfsha256-ecp256".
func (s Suite) String() string {
	var e string
	switch s.Encr {
	case wire.EncrAESGCM16:
		e = "aes" + strconv.Itoa(s.KeyBits) + "gcm16"
	case wire.EncrAESCBC:
		e = "aes" + strconv.Itoa(s.KeyBits)
	default:
		e = "encr" + strconv.Itoa(int(s.Encr))
	}
	if s.Integ == wire.IntegSHA256 {
		e += "-sha256"
	} else if s.Integ != wire.IntegNone {
		e += "-integ" + strconv.Itoa(int(s.Integ))
	}
	p := "prf" + strconv.Itoa(int(s.PRF))
	if s.PRF == wire.PRFHMACSHA256 {
		p = "prfsha256"
	}
	g := "modp" + strconv.Itoa(int(s.Group))
	switch s.Group {
	case wire.DHCurve25519:
		g = "x25519"
	case wire.DHECP256:
		g = "ecp256"
	}
	return e + "-" + p + "-" + g
}

// AEAD reports whether the cipher is combined mode (AES-GCM).
func (s Suite) AEAD() bool { return s.Encr == wire.EncrAESGCM16 }

// encKeyLen is the length of SK_e: the AES key, plus the 4-octet salt for
// AES-GCM (RFC 5282 §7.1).
func (s Suite) encKeyLen() int {
	if s.AEAD() {
		return s.KeyBits/8 + gcmSaltLen
	}
	return s.KeyBits / 8
}

// integKeyLen is the length of SK_a: 32 octets for HMAC-SHA2-256-128
// (RFC 4868 §2.1.1), none with an AEAD.
func (s Suite) integKeyLen() int {
	if s.Integ == wire.IntegSHA256 {
		return sha256KeyLen
	}
	return 0
}

// Validate reports ErrUnsupported for any transform outside the set above.
func (s Suite) Validate() error {
	switch {
	case s.Encr == wire.EncrAESGCM16 && (s.KeyBits == 128 || s.KeyBits == 256) && s.Integ == wire.IntegNone:
	case s.Encr == wire.EncrAESCBC && (s.KeyBits == 128 || s.KeyBits == 192 || s.KeyBits == 256) && s.Integ == wire.IntegSHA256:
	default:
		return fmt.Errorf("%w: cipher %s", ErrUnsupported, s)
	}
	if s.PRF != wire.PRFHMACSHA256 {
		return fmt.Errorf("%w: prf %d", ErrUnsupported, s.PRF)
	}
	if s.Group != wire.DHCurve25519 && s.Group != wire.DHECP256 {
		return fmt.Errorf("%w: dh group %v", ErrUnsupported, s.Group)
	}
	return nil
}

// SuiteOf reads the transform set of a proposal a responder accepted: exactly
// one transform of each type it needs, as RFC 7296 §3.3.6 requires of a
// chosen proposal.
func SuiteOf(p wire.Proposal) (Suite, error) {
	var s Suite
	seen := map[wire.TransformType]bool{}
	for _, t := range p.Transforms {
		if seen[t.Type] {
			return s, fmt.Errorf("ike: accepted proposal has two %s transforms: %w", t.Type, wire.ErrBadLength)
		}
		seen[t.Type] = true
		switch t.Type {
		case wire.TransformENCR:
			s.Encr = t.ID
			kl, ok := t.KeyLength()
			if !ok {
				return s, fmt.Errorf("ike: accepted cipher %d without key length: %w", t.ID, ErrUnsupported)
			}
			s.KeyBits = int(kl)
		case wire.TransformINTEG:
			s.Integ = t.ID
		case wire.TransformPRF:
			s.PRF = t.ID
		case wire.TransformDH:
			s.Group = wire.DHGroup(t.ID)
		}
	}
	if !seen[wire.TransformENCR] || !seen[wire.TransformPRF] || !seen[wire.TransformDH] {
		return s, fmt.Errorf("ike: accepted proposal %s is incomplete: %w", p, ErrUnsupported)
	}
	return s, s.Validate()
}

// Offers reports whether proposal list props offers suite s in one proposal
// (a responder must pick one transform of each type from one proposal).
func Offers(props []wire.Proposal, s Suite) bool {
	for _, p := range props {
		if p.Protocol != wire.ProtocolIKE {
			continue
		}
		var encr, integ, prf, dh bool
		hasInteg := false
		for _, t := range p.Transforms {
			switch t.Type {
			case wire.TransformENCR:
				kl, _ := t.KeyLength()
				encr = encr || (t.ID == s.Encr && int(kl) == s.KeyBits)
			case wire.TransformINTEG:
				hasInteg = true
				integ = integ || t.ID == s.Integ
			case wire.TransformPRF:
				prf = prf || t.ID == s.PRF
			case wire.TransformDH:
				dh = dh || wire.DHGroup(t.ID) == s.Group
			}
		}
		if !hasInteg {
			integ = s.Integ == wire.IntegNone
		}
		if encr && integ && prf && dh {
			return true
		}
	}
	return false
}

// DefaultProposals is what the initiator offers: AES-GCM-16 (128, 256) and
// AES-CBC (128, 256) with HMAC-SHA2-256-128, each with PRF HMAC-SHA2-256 and
// the groups Curve25519 and ECP-256.
func DefaultProposals() []wire.Proposal {
	groups := []wire.Transform{
		{Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)},
		{Type: wire.TransformDH, ID: uint16(wire.DHECP256)},
	}
	prf := wire.Transform{Type: wire.TransformPRF, ID: wire.PRFHMACSHA256}
	gcm := []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.EncrAESGCM16, Attributes: []wire.Attribute{wire.KeyLength(128)}},
		{Type: wire.TransformENCR, ID: wire.EncrAESGCM16, Attributes: []wire.Attribute{wire.KeyLength(256)}},
		prf,
	}
	cbc := []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: []wire.Attribute{wire.KeyLength(128)}},
		{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: []wire.Attribute{wire.KeyLength(256)}},
		{Type: wire.TransformINTEG, ID: wire.IntegSHA256},
		prf,
	}
	return []wire.Proposal{
		{Num: 1, Protocol: wire.ProtocolIKE, Transforms: append(gcm, groups...)},
		{Num: 2, Protocol: wire.ProtocolIKE, Transforms: append(cbc, groups...)},
	}
}

// Proposal is a single IKE proposal for exactly suite s (for callers that
// want to force one suite, e.g. interop tests).
func Proposal(s Suite) wire.Proposal {
	p := wire.Proposal{Num: 1, Protocol: wire.ProtocolIKE, Transforms: []wire.Transform{
		{Type: wire.TransformENCR, ID: s.Encr, Attributes: []wire.Attribute{wire.KeyLength(uint16(s.KeyBits))}},
	}}
	if s.Integ != wire.IntegNone {
		p.Transforms = append(p.Transforms, wire.Transform{Type: wire.TransformINTEG, ID: s.Integ})
	}
	p.Transforms = append(p.Transforms,
		wire.Transform{Type: wire.TransformPRF, ID: s.PRF},
		wire.Transform{Type: wire.TransformDH, ID: uint16(s.Group)})
	return p
}
