// Package probe is the active path-probe adapter of mobiked.
//
// It runs one prober per local×remote address pair (shared by every SA that
// uses the pair), sends ICMP echo or STAMP (RFC 8762) test packets bound to the
// pair's source address and uplink device (SO_BINDTODEVICE), measures RTT,
// loss, jitter and NAT, and reports every probe outcome to the core as a
// mobike.EvProbeResult. It takes no decisions: it never declares a pair down.
//
// The package also holds a hand-written STAMP codec (Session-Sender and
// Session-Reflector packets, RFC 8972 TLVs with the Location and HMAC TLVs)
// and a STAMP Session-Reflector for the gateway side.
//
// Pacing and timeouts run on an injected Clock, so tests drive them with a
// virtual clock; sockets go through the Transport interface, so tests can
// replace the network with an in-memory one.
package probe
