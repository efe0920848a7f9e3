package probe

import (
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Path is what a transport needs to probe one pair.
type Path struct {
	Pair    mobike.Pair
	LinkIdx int    // uplink the probes must leave through
	Uplink  string // its name (SO_BINDTODEVICE); empty = use LinkIdx
}

// Reply is a reply a transport matched to a pair. The prober accepts it only
// if Seq matches an outstanding probe (compared on the low 16 bits, which is
// all ICMP carries) and Nonce equals that probe's nonce.
type Reply struct {
	Seq uint32
	// Nonce is the probe's randomness as echoed; it may alias the
	// transport's receive buffer, so it is valid only during the deliver
	// call.
	Nonce []byte
	At    time.Time // arrival time on the Manager's clock (kernel receive time when known)
	// Remote is the time the reply spent at the far end (STAMP T3−T2); it is
	// subtracted from the RTT.
	Remote time.Duration
	NAT    mobike.NATVerdict // what this reply revealed; NATUnknown = nothing
}

// Transport opens endpoints of one probe method. The Manager calls it with its
// lock held, so implementations must not call back into the Manager.
type Transport interface {
	// Open returns an endpoint probing p. Replies for p are passed to deliver,
	// from any goroutine, until the endpoint is closed.
	Open(p Path, deliver func(Reply)) (Endpoint, error)
}

// Endpoint sends the probes of one pair.
type Endpoint interface {
	// NonceLen is the number of random octets each probe carries (at most
	// MaxNonceLen).
	NonceLen() int
	// Send transmits probe seq carrying nonce (or queues it until the
	// transport's Flush) and returns the octets it puts on the wire, IP and
	// ICMP/UDP headers included. nonce is valid only during the call.
	Send(seq uint32, nonce []byte) (int, error)
	Close() error
}

// MaxNonceLen bounds Endpoint.NonceLen.
const MaxNonceLen = 16

// Flusher is implemented by transports that queue the probes of a scheduler
// round and send them together (one sendmmsg per socket): the Manager calls
// Flush at the end of every round in which it called Send, right after
// stamping the round's probes with their send time and releasing its lock
// (Flush may run concurrently with deliveries and with another Flush).
type Flusher interface {
	Flush()
}

// Poller is implemented by transports whose replies wait in their sockets
// until read: the Manager calls Poll at the start of every scheduler round
// in which a probe of theirs is in flight, before it judges any timeout, and
// schedules rounds when replies are expected. Poll reads without blocking and
// delivers what it finds; the Manager's lock is not held.
type Poller interface {
	Poll()
}
