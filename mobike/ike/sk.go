package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Errors of the Encrypted payload.
var (
	ErrIntegrity    = errors.New("ike: integrity check failed")
	ErrNotEncrypted = errors.New("ike: no encrypted payload")
	ErrNestedSK     = errors.New("ike: encrypted payload inside an encrypted payload")
	ErrBadPadding   = errors.New("ike: bad padding")
)

const (
	gcmIVLen   = 8  // RFC 5282 §3.1
	gcmICVLen  = 16 // ENCR_AES_GCM_16
	cbcIVLen   = aes.BlockSize
	hmacICVLen = 16 // AUTH_HMAC_SHA2_256_128 (RFC 4868 §2.3)
)

// SK seals and opens the Encrypted payload (RFC 7296 §3.14) for one
// direction of an IKE SA: the initiator's keys (SK_ei, SK_ai) protect what
// the original initiator sends, the responder's what it receives.
type SK struct {
	suite Suite
	aead  cipher.AEAD
	salt  []byte
	block cipher.Block
	integ []byte
}

// NewSK returns the protection of one direction. encKey is SK_e (with its
// salt for AES-GCM), integKey SK_a (nil for AES-GCM).
func NewSK(s Suite, encKey, integKey []byte) (*SK, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(encKey) != s.encKeyLen() || len(integKey) != s.integKeyLen() {
		return nil, fmt.Errorf("ike: %s keys of %d/%d octets: %w", s, len(encKey), len(integKey), wire.ErrBadLength)
	}
	sk := &SK{suite: s}
	if s.AEAD() {
		n := len(encKey) - gcmSaltLen
		b, err := aes.NewCipher(encKey[:n])
		if err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		if sk.aead, err = cipher.NewGCM(b); err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		sk.salt = append([]byte{}, encKey[n:]...)
		return sk, nil
	}
	b, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	sk.block, sk.integ = b, append([]byte{}, integKey...)
	return sk, nil
}

// IVLen is the length of the IV that Seal expects: 8 octets for AES-GCM
// (it must never repeat under one key), 16 unpredictable octets for AES-CBC.
func (sk *SK) IVLen() int {
	if sk.aead != nil {
		return gcmIVLen
	}
	return cbcIVLen
}

// Seal encodes a message whose payloads are all carried inside one
// Encrypted payload: header | SK header | IV | encrypt(inner | padding |
// pad length) | ICV. With AES-GCM the associated data is everything from the
// IKE header to the end of the SK header (RFC 5282 §5.1) and no padding is
// added; with AES-CBC the plaintext is padded to the block size and the ICV
// is HMAC-SHA2-256-128 over everything before it (RFC 7296 §3.14).
func (sk *SK) Seal(h wire.Header, inner []wire.Payload, iv []byte) ([]byte, error) {
	if len(iv) != sk.IVLen() {
		return nil, fmt.Errorf("ike: seal: iv of %d octets: %w", len(iv), wire.ErrBadLength)
	}
	for _, p := range inner {
		if p != nil && p.PayloadType() == wire.PayloadEncrypted {
			return nil, fmt.Errorf("ike: seal: %w", ErrNestedSK)
		}
	}
	first, pb, err := wire.MarshalPayloads(inner)
	if err != nil {
		return nil, fmt.Errorf("ike: seal: %w", err)
	}
	pad := 0
	if sk.aead == nil {
		pad = (aes.BlockSize - (len(pb)+1)%aes.BlockSize) % aes.BlockSize
	}
	plain := append(pb, make([]byte, pad+1)...)
	plain[len(plain)-1] = byte(pad)
	bodyLen := len(iv) + len(plain) + gcmICVLen // same ICV size for both suites
	m := &wire.Message{Header: h, Payloads: []wire.Payload{&wire.Encrypted{FirstInner: first, Body: make([]byte, bodyLen)}}}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("ike: seal: %w", err)
	}
	skEnd := len(b) - bodyLen // end of the SK payload's generic header
	body := b[skEnd:]
	copy(body, iv)
	if sk.aead != nil {
		nonce := append(append(make([]byte, 0, 12), sk.salt...), iv...)
		sk.aead.Seal(body[len(iv):len(iv)], nonce, plain, b[:skEnd])
		return b, nil
	}
	cipher.NewCBCEncrypter(sk.block, iv).CryptBlocks(body[len(iv):len(iv)+len(plain)], plain)
	copy(b[len(b)-hmacICVLen:], sk.icv(b[:len(b)-hmacICVLen]))
	return b, nil
}

func (sk *SK) icv(data []byte) []byte {
	m := hmac.New(sha256.New, sk.integ)
	m.Write(data)
	return m.Sum(nil)[:hmacICVLen]
}

// Open checks and decrypts a message whose last payload is the Encrypted
// payload. The returned message has b's header and the decrypted inner
// payloads (payloads in clear before SK are dropped). An SK payload inside
// the decrypted chain is refused (ErrNestedSK).
func (sk *SK) Open(b []byte) (*wire.Message, error) {
	m, err := wire.Parse(b)
	if err != nil {
		return nil, err
	}
	if len(m.Payloads) == 0 {
		return nil, ErrNotEncrypted
	}
	enc, ok := m.Payloads[len(m.Payloads)-1].(*wire.Encrypted)
	if !ok {
		return nil, ErrNotEncrypted
	}
	body := enc.Body
	skEnd := len(b) - len(body)
	var plain []byte
	if sk.aead != nil {
		if len(body) < gcmIVLen+gcmICVLen+1 {
			return nil, fmt.Errorf("ike: open: %d octets: %w", len(body), wire.ErrTruncated)
		}
		nonce := append(append(make([]byte, 0, 12), sk.salt...), body[:gcmIVLen]...)
		if plain, err = sk.aead.Open(nil, nonce, body[gcmIVLen:], b[:skEnd]); err != nil {
			return nil, ErrIntegrity
		}
	} else {
		ct := len(body) - cbcIVLen - hmacICVLen
		if ct <= 0 || ct%aes.BlockSize != 0 {
			return nil, fmt.Errorf("ike: open: %d octets: %w", len(body), wire.ErrBadLength)
		}
		if !hmac.Equal(sk.icv(b[:len(b)-hmacICVLen]), b[len(b)-hmacICVLen:]) {
			return nil, ErrIntegrity
		}
		plain = make([]byte, ct)
		cipher.NewCBCDecrypter(sk.block, body[:cbcIVLen]).CryptBlocks(plain, body[cbcIVLen:cbcIVLen+ct])
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, ErrBadPadding
	}
	inner, err := wire.ParsePayloads(enc.FirstInner, plain[:len(plain)-1-pad])
	if err != nil {
		return nil, fmt.Errorf("ike: open: inner payloads: %w", err)
	}
	for _, p := range inner {
		if p.PayloadType() == wire.PayloadEncrypted {
			return nil, ErrNestedSK
		}
	}
	return &wire.Message{Header: m.Header, Payloads: inner}, nil
}
