// Package proto is a sans-IO RFC 4555 (MOBIKE) protocol engine: one Peer is
// one endpoint of one IKE SA, in the MOBIKE initiator or responder role.
//
// The engine consumes decoded messages (wire.Message) together with the IP/UDP
// addresses they travelled on, and returns Outputs: packets to send (Send) and
// typed observations (Established, AddressesUpdated, TrafficMoved,
// PeerAddressesChanged, ReturnRoutabilityStarted/Passed/Failed, ...). It never
// opens a socket, reads the clock, starts a goroutine or logs: now is an
// argument, and randomness (SPIs, COOKIE2) comes from Config.Rand.
//
// What is modelled:
//   - MOBIKE_SUPPORTED negotiation in IKE_AUTH (M2), additional addresses in
//     IKE_AUTH (M7), NAT detection in IKE_SA_INIT and the float to port 4500
//     (M6, B10), IKE SA addresses from the first IKE_AUTH header (M5);
//   - the initiator's address update (M10–M16, M25–M30) with NAT-D, COOKIE2
//     and NO_NATS_ALLOWED when NAT traversal is off (M53);
//   - path testing over several pairs (M57, M58, M60; RFC 4621 §6.2): one
//     request with COOKIE2 and NAT-D whose retransmissions walk the candidate
//     pairs and, when it was sent on more than one pair, a restart with a
//     fresh request on the pair that answered;
//   - the responder's update handling in RFC order (M17–M24), return
//     routability with COOKIE2 before moving traffic (M22, M40–M46),
//     UNACCEPTABLE_ADDRESSES (M19), NO_NATS_ALLOWED → UNEXPECTED_NAT_DETECTED
//     (M18, M54, M55);
//   - peer address sets: full replacement, the packet source counts, newest
//     Message ID wins (M32–M35, M62), the responder's own address change
//     (M27, M65, M66);
//   - windows, identical retransmissions moved to the current pair (B4, B5,
//     M13, M14, M61), stored responses re-sent to each copy's source (M59);
//   - liveness: only packets on the current pair count (RFC 4621 §5.5.2,
//     M69); DPD with NAT-D when behind a NAT (M49); keepalive pair (M52);
//     a responder move budget answered with UNACCEPTABLE_ADDRESSES (M70).
//
// Fixed policies where the RFCs leave a choice: a received COOKIE2 outside
// 8..64 octets is not echoed (M42); a response missing COOKIE2 closes the SA
// like a wrong one (M43); ADDITIONAL_* wins over NO_ADDITIONAL_ADDRESSES in
// one message (M38); the initiator does not re-target from the source of a
// responder's address list but sends its own update when the address in use
// vanished (M66); a failed return routability check closes the SA (RFC 4621
// §5.5.2); a path test that no candidate answers falls back to the IKE SA
// pair and only a failure there closes the SA (M61, B6).
//
// The IKE SA's cryptography comes from Config.Crypto (mobike/ike implements
// it for the initiator; mobike-conform uses it against real gateways): the
// engine then sends IKE_SA_INIT with SA, KE and Nonce, retries it on COOKIE
// and INVALID_KE_PAYLOAD, adds IDi and AUTH to IKE_AUTH, and has every
// message encoded once by Crypto.Seal so that retransmissions and re-sent
// responses are byte-identical (B5). Without a Crypto the engine runs a
// reduced model: IKE_SA_INIT is its header and NAT_DETECTION_* notifies,
// IKE_AUTH its MOBIKE notifies. Either way Message.Payloads of an
// INFORMATIONAL is the Encrypted payload's inner chain and every message
// handed to Handle is taken as authenticated (the caller decrypts first).
// Rekeying, CREATE_CHILD_SA, EAP rounds and SET_WINDOW_SIZE negotiation (the
// window is configured) are not modelled; the responder role has no Crypto.
//
// More rules: an address list whose every entry is refused (malformed,
// loopback, multicast, unspecified) does not replace the peer set; COOKIE2
// is echoed also in UNSUPPORTED_CRITICAL_PAYLOAD replies and on SAs where
// the other side did not negotiate MOBIKE; INVALID_SYNTAX in a response to
// an INFORMATIONAL closes the SA (RFC 7296 §2.21.3); an Encrypted payload
// inside the Encrypted payload is answered with INVALID_SYNTAX; without a
// reference from an update reply, the first DPD answer with NAT-D sets it
// (M49); a stale UPDATE_SA_ADDRESSES is answered before NO_NATS_ALLOWED is
// checked (M17 before M18).
//
// Rule numbers (Mnn, Bnn) refer to /work/shared/docs/mobike-digest.md.
package proto
