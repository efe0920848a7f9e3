package ike

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/mobiked/mobiked/mobike/wire"
)

const (
	sha256KeyLen = 32 // HMAC-SHA2-256 key and output size (RFC 4868 §2.1.1)
	gcmSaltLen   = 4  // RFC 5282 §7.1
)

// PRF is prf(K, S) of RFC 7296 §2.13 with PRF_HMAC_SHA2_256 (RFC 4868): the
// full 32-octet HMAC-SHA2-256 of data under key.
func PRF(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// maxPRFPlus is the most prf+ can produce: the counter is one octet and
// runs from 0x01 to 0xff (RFC 7296 §2.13).
const maxPRFPlus = 255 * sha256KeyLen

// PRFPlus is prf+ (K, S) of RFC 7296 §2.13, cut to n octets:
// T1 = prf(K, S | 0x01), Tk = prf(K, Tk-1 | S | k).
func PRFPlus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 || n > maxPRFPlus {
		return nil, fmt.Errorf("ike: prf+ of %d octets: %w", n, wire.ErrTooLong)
	}
	out := make([]byte, 0, n+sha256KeyLen)
	var t []byte
	for k := byte(1); len(out) < n; k++ {
		m := hmac.New(sha256.New, key)
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{k})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n], nil
}

// Keys are the IKE SA's keys (RFC 7296 §2.14). AI and AR are empty with an
// AEAD cipher; EI and ER then end with the 4-octet salt.
type Keys struct {
	SKEYSEED                  []byte
	D, AI, AR, EI, ER, PI, PR []byte
}

// ErrBadKeyShare is returned for a peer key share that is not a valid
// point of its group, and for an all-zero shared secret.
var ErrBadKeyShare = errors.New("ike: bad key share")

// DeriveKeys computes SKEYSEED = prf(Ni | Nr, g^ir) and splits
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into SK_d, SK_ai, SK_ar, SK_ei,
// SK_er, SK_pi and SK_pr, in that order (RFC 7296 §2.14). With an HMAC PRF
// the key of the first prf is the whole Ni | Nr.
func DeriveKeys(s Suite, ni, nr, shared []byte, spiI, spiR wire.SPI) (*Keys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	nonces := append(append([]byte{}, ni...), nr...)
	k := &Keys{SKEYSEED: PRF(nonces, shared)}
	seed := append(append(append([]byte{}, nonces...), spiI[:]...), spiR[:]...)
	a, e := s.integKeyLen(), s.encKeyLen()
	lens := []int{sha256KeyLen, a, a, e, e, sha256KeyLen, sha256KeyLen}
	total := 0
	for _, l := range lens {
		total += l
	}
	km, err := PRFPlus(k.SKEYSEED, seed, total)
	if err != nil {
		return nil, err
	}
	parts := make([][]byte, len(lens))
	for i, l := range lens {
		parts[i], km = km[:l:l], km[l:]
	}
	k.D, k.AI, k.AR, k.EI, k.ER, k.PI, k.PR = parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]
	return k, nil
}
