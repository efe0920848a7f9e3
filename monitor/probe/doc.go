// Package probe is the active path-probe adapter of mobiked.
//
// It runs one prober per local×remote address pair (shared by every SA that
// uses the pair), sends ICMP echo or STAMP (RFC 8762) test packets bound to the
// pair's source address and uplink device (SO_BINDTODEVICE), measures RTT,
// loss, jitter and NAT, and reports every probe outcome to the core as a
// mobike.EvProbeResult. It takes no decisions: it never declares a pair down;
// it supplies the evidence the core's verdict rests on.
//
// Cost. One scheduler serves every pair with a single clock timer that wakes
// on a coarse grid (Options.Coalesce). A pair's next regular probe joins a
// round another pair already has within its jitter window, so pairs converge
// on shared rounds: one wake-up, one sendmmsg per socket and one read of the
// replies for many pairs (100 active pairs: ~20 wake-ups/s). All pairs of an
// uplink share one socket per address family (source address per packet via
// IP_PKTINFO / IPV6_PKTINFO); the sockets stay out of Go's netpoller, the
// scheduler reads them (non-blocking recvmmsg) when replies are due and
// before it judges a timeout, and the kernel's receive timestamps
// (SO_TIMESTAMPNS) keep RTTs exact however late a reply is read.
//
// Timeouts and confirmation. A probe's timeout is the pair's RFC 6298 RTO
// (SRTT + 4×RTTVAR within [MinTimeout, MaxTimeout], doubled per timeout until
// the next reply), or a fixed Profiles.Timeout. The first loss of a streak
// starts a confirmation burst (Profiles.Burst probes a third of the timeout
// apart); results carry PathStats.Confirming while it is in flight, and the
// core waits for the burst before a down verdict, so a dead pair is declared
// down about one backed-off timeout plus two gaps after the first miss,
// whatever the interval, and a random loss needs the whole burst lost too.
// The core may request a burst (ActProbeConfirm, Manager.Confirm). A reply
// that comes after its probe timed out still proves the pair alive: it ends
// the streak, turns the loss back into a delivery and feeds SRTT.
//
// The package also holds a hand-written STAMP codec (Session-Sender and
// Session-Reflector packets, RFC 8972 TLVs with the Location and HMAC TLVs)
// and a STAMP Session-Reflector for the gateway side.
//
// Pacing and timeouts run on an injected Clock, so tests drive them with a
// virtual clock; sockets go through the Transport interface, so tests can
// replace the network with an in-memory one.
package probe
