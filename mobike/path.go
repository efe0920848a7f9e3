package mobike

import (
	"net/netip"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// RFC 4621 §2 terms.

// Available reports whether a is an available address (RFC 4621 §2): assigned,
// for IPv6 not tentative and not dadfailed (DAD completed), and global unicast
// or unique local. Link-local, loopback, multicast and unspecified addresses
// are never available.
func Available(a Address) bool {
	ip := a.Prefix.Addr()
	if !ip.IsValid() || !ip.IsGlobalUnicast() {
		return false
	}
	return a.Flags&(AddrTentative|AddrDADFailed) == 0
}

// LocallyOperational reports whether a is a locally operational address
// (RFC 4621 §2): available, on a link that is up, and on an uplink the policy
// does not exclude.
func LocallyOperational(a Address, l Link, up policy.UplinkPolicy) bool {
	return Available(a) && l.Up && l.Index == a.LinkIdx && !up.Exclude
}

// validPeer reports whether r may be a pair's remote address.
func validPeer(r netip.Addr) bool {
	return r.IsValid() && r.Unmap().IsGlobalUnicast()
}

// PathState is the state of a pair (a path). An operational pair is one with
// bidirectional connectivity proven by a probe reply that echoed the probe's
// fresh randomness (RFC 4621 §2 "operational address pair").
//
//	unknown ─probe started─► testing ─reply, SLA met───────► operational
//	                            │                              │     ▲
//	                            │ reply, SLA breached          │     │
//	                            │               SLA breached   ▼     │ SLA met
//	                            └────────────────────────► degraded ─┘
//
//	any state ─K consecutive losses, window loss, link down,─► down
//	            address or peer gone
//
//	down ─reply─► testing
//
// A pair leaves down only through testing: one reply makes it testing, the
// next one operational (or degraded). "Stably operational" for the hold-down
// is measured from the last entry into operational. transition is the table;
// TestTransitionTable checks every cell.
type PathState uint8

const (
	PathUnknown PathState = iota
	PathTesting
	PathOperational
	PathDegraded
	PathDown
)

func (s PathState) String() string {
	switch s {
	case PathUnknown:
		return "unknown"
	case PathTesting:
		return "testing"
	case PathOperational:
		return "operational"
	case PathDegraded:
		return "degraded"
	case PathDown:
		return "down"
	}
	return "path-state(" + itoa(int(s)) + ")"
}

// Usable reports whether a pair in this state may carry SAs (operational or
// degraded).
func (s PathState) Usable() bool { return s == PathOperational || s == PathDegraded }

// PathReason names why a pair changed state.
type PathReason uint8

const (
	ReasonNone          PathReason = iota
	ReasonProbeStarted             // the prober was started
	ReasonReply                    // a reply with the probe's randomness arrived, SLA met
	ReasonSLABreach                // replies arrive but loss or RTT breach the degraded SLA
	ReasonConsecLoss               // K consecutive probes were lost
	ReasonWindowLoss               // loss ratio over the window reached the down threshold
	ReasonLinkDown                 // the local address's link went down
	ReasonAddrGone                 // the local address is no longer available
	ReasonPeerGone                 // the remote address is no longer a peer address
	ReasonExcluded                 // the uplink was excluded by policy
	ReasonResponderOnly            // only responder SAs use the peer: just their pairs are watched
)

func (r PathReason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonProbeStarted:
		return "probe-started"
	case ReasonReply:
		return "reply"
	case ReasonSLABreach:
		return "sla-breach"
	case ReasonConsecLoss:
		return "consecutive-loss"
	case ReasonWindowLoss:
		return "window-loss"
	case ReasonLinkDown:
		return "link-down"
	case ReasonAddrGone:
		return "addr-gone"
	case ReasonPeerGone:
		return "peer-gone"
	case ReasonExcluded:
		return "excluded"
	case ReasonResponderOnly:
		return "responder-only"
	}
	return "path-reason(" + itoa(int(r)) + ")"
}

// pathInput is what happened to a pair, classified from an event.
type pathInput uint8

const (
	inProbeStart pathInput = iota // ActProbeStart emitted for the pair
	inGood                        // reply, SLA met
	inBreach                      // reply, SLA breached
	inLoss                        // a probe lost, not (yet) enough for down
	inDown                        // K consecutive losses or window loss
	inGone                        // local address or peer address gone
	numInputs
)

func (in pathInput) String() string {
	switch in {
	case inProbeStart:
		return "probe-start"
	case inGood:
		return "good"
	case inBreach:
		return "breach"
	case inLoss:
		return "loss"
	case inDown:
		return "down"
	case inGone:
		return "gone"
	}
	return "input(" + itoa(int(in)) + ")"
}

// transition is the pair state machine's table: the next state for a state
// and an input; ok is false when the input changes nothing.
func transition(s PathState, in pathInput) (PathState, bool) {
	switch in {
	case inProbeStart:
		if s == PathUnknown {
			return PathTesting, true
		}
	case inGood:
		switch s {
		case PathUnknown, PathTesting, PathDegraded:
			return PathOperational, true
		case PathDown:
			return PathTesting, true
		}
	case inBreach:
		switch s {
		case PathUnknown, PathTesting, PathOperational:
			return PathDegraded, true
		case PathDown:
			return PathTesting, true
		}
	case inDown, inGone:
		if s != PathDown {
			return PathDown, true
		}
	}
	return s, false
}

// classify turns a probe result into a state-machine input and the reason
// carried by the transition it may cause.
func classify(ev EvProbeResult, pp policy.PathPolicy) (pathInput, PathReason) {
	st := ev.Stats
	// While a confirmation burst is in flight the losses are not final
	// evidence: the prober sends the burst to decide exactly this, so a
	// random loss or two does not take a pair down (monitor/probe,
	// Profiles.Burst). The burst's last result carries the verdict.
	if st.ConsecLost >= pp.DownAfter && !st.Confirming {
		return inDown, ReasonConsecLoss
	}
	// The window rule needs enough samples not to call one early loss a
	// 100% loss.
	if st.Sent >= uint64(2*pp.DownAfter) && st.LossRatio >= pp.DownLoss && !st.Confirming {
		return inDown, ReasonWindowLoss
	}
	if !ev.OK {
		return inLoss, ReasonNone
	}
	rtt := st.SRTT
	if rtt == 0 {
		rtt = ev.RTT
	}
	if st.LossRatio > pp.Degraded.MaxLoss || rtt > pp.Degraded.MaxRTT {
		return inBreach, ReasonSLABreach
	}
	return inGood, ReasonReply
}

// pair is one candidate path, shared by every connection that has its remote
// address as a peer address.
type pair struct {
	p          Pair
	linkIdx    int
	uplink     policy.UplinkPolicy
	state      PathState
	reason     PathReason
	since      time.Time // entry into state
	stable     time.Time // entry into operational; zero when not operational
	stats      PathStats
	started    ActProbeStart // last start emitted; zero Pair = not started
	slaMask    [2]uint64     // which of the controller's distinct SLAs the pair meets (Controller.slaMask)
	deprecated bool          // the local address is deprecated
	rttClass   int
	// rttHalfClass is the class of half the RTT: what the ranking uses
	// when the pair is a connection's current one (hysteresis).
	rttHalfClass int
}

func (p *pair) usable() bool { return p.state.Usable() }

func (p *pair) nat() bool { return p.stats.NAT == NATPresent }

func (p *pair) rtt() time.Duration {
	if p.stats.SRTT != 0 {
		return p.stats.SRTT
	}
	return p.stats.RTTP50
}
