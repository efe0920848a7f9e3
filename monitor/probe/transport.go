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
	Seq   uint32
	Nonce []byte
	At    time.Time // arrival time on the Manager's clock
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
	// NonceLen is the number of random octets each probe carries.
	NonceLen() int
	// Send transmits probe seq carrying nonce and returns the octets put on
	// the wire, IP and ICMP/UDP headers included.
	Send(seq uint32, nonce []byte) (int, error)
	Close() error
}
