// Package ike is the cryptography of an IKEv2 (RFC 7296) initiator: the
// Diffie-Hellman key shares (Curve25519 per RFC 8031, ECP-256 per RFC 5903),
// the key derivation (SKEYSEED and prf+ of RFC 7296 §2.13–§2.14), the
// Encrypted (SK) payload with AES-GCM-16 (RFC 5282) or AES-CBC with
// HMAC-SHA2-256-128 (RFC 3602, RFC 4868), and pre-shared key authentication
// (RFC 7296 §2.15).
//
// Initiator plugs into mobike/proto as its Crypto: proto drives the
// exchanges (IKE_SA_INIT with COOKIE and INVALID_KE_PAYLOAD retries,
// IKE_AUTH, INFORMATIONAL) and asks Initiator for the non-MOBIKE payloads and
// for the encoded bytes of every message; the transport adapter hands
// received datagrams to Open before proto sees them.
//
// Like mobike/wire and mobike/proto the package is sans-IO: no sockets, no
// clock, no logging. Randomness (key shares, nonces, SPIs of a child
// proposal, CBC IVs) comes from Config.Rand; only the standard library's
// crypto is used.
package ike
