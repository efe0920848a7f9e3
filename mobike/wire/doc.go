// Package wire is the IKEv2 (RFC 7296) and MOBIKE (RFC 4555) wire codec.
//
// It owns the byte layout and nothing else: the IKE header, the generic
// payload chain, Notify payloads with every MOBIKE notify type and their data
// (ADDITIONAL_IP4/6_ADDRESS, COOKIE2, NO_NATS_ALLOWED, ...), the NAT detection
// hash of RFC 7296 §2.23, the SA/KE/Nonce payloads needed to build an
// IKE_SA_INIT request and to read any IKE_SA_INIT response, the Delete payload,
// and the non-ESP marker used on UDP port 4500. The Encrypted (SK) payload is
// carried opaquely: encryption belongs to the caller, which can encode and
// decode the inner chain with MarshalPayloads and ParsePayloads.
//
// The package is pure: no sockets, no clock, no logging, no global state.
// Malformed input never panics; decoders return a *ParseError (offset and
// reason) that wraps one of the sentinel errors (ErrTruncated, ErrBadLength,
// ...), so callers can branch with errors.Is and errors.As.
//
// Typical use:
//
//	m, err := wire.Parse(datagram)
//	for _, p := range m.Payloads {
//		if n, ok := p.(*wire.Notify); ok && n.Type == wire.NotifyUpdateSAAddresses { ... }
//	}
//	out, err := m.Marshal() // Next Payload and Length fields are computed
package wire
