package ike

import (
	"crypto/ecdh"
	"fmt"
	"io"

	"github.com/mobiked/mobiked/mobike/wire"
)

// KeyShare is one side's ephemeral Diffie-Hellman key of an IKE_SA_INIT.
type KeyShare struct {
	Group wire.DHGroup
	Priv  *ecdh.PrivateKey
}

func curve(g wire.DHGroup) (ecdh.Curve, error) {
	switch g {
	case wire.DHCurve25519:
		return ecdh.X25519(), nil
	case wire.DHECP256:
		return ecdh.P256(), nil
	}
	return nil, fmt.Errorf("%w: dh group %v", ErrUnsupported, g)
}

// NewKeyShare draws a private key of group g from rand. Unlike
// ecdh.Curve.GenerateKey (which ignores its reader since Go 1.26) the key
// depends only on rand, so tests can be deterministic.
func NewKeyShare(g wire.DHGroup, rand io.Reader) (*KeyShare, error) {
	c, err := curve(g)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	for range 100 { // a P-256 scalar above the order is redrawn
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, fmt.Errorf("ike: key share: %w", err)
		}
		if k, err := c.NewPrivateKey(b); err == nil {
			return &KeyShare{Group: g, Priv: k}, nil
		}
	}
	return nil, fmt.Errorf("ike: key share: no valid %v scalar from the random source", g)
}

// KeyShareFrom makes a KeyShare from a known private key (test vectors).
func KeyShareFrom(g wire.DHGroup, priv []byte) (*KeyShare, error) {
	c, err := curve(g)
	if err != nil {
		return nil, err
	}
	k, err := c.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ike: key share: %w", err)
	}
	return &KeyShare{Group: g, Priv: k}, nil
}

// Public is the Key Exchange Data of the KE payload: the 32-octet u
// coordinate for Curve25519 (RFC 8031 §2), x | y without the point-format
// octet for ECP groups (RFC 5903 §7).
func (k *KeyShare) Public() []byte {
	pub := k.Priv.PublicKey().Bytes()
	if k.Group == wire.DHECP256 {
		return pub[1:]
	}
	return pub
}

// Shared computes g^ir from the peer's Key Exchange Data: the u coordinate
// for Curve25519 (an all-zero result is refused, RFC 8031 §2.3) and the x
// coordinate for ECP groups (RFC 5903 §7).
func (k *KeyShare) Shared(peer []byte) ([]byte, error) {
	c, _ := curve(k.Group)
	if k.Group == wire.DHECP256 {
		if len(peer) != 64 {
			return nil, fmt.Errorf("%w: %d octets for %v", ErrBadKeyShare, len(peer), k.Group)
		}
		peer = append([]byte{4}, peer...)
	}
	pub, err := c.NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyShare, err)
	}
	s, err := k.Priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyShare, err)
	}
	return s, nil
}
