package mobike

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// This file is the contract between the core and its adapters: the events the
// adapters feed into Controller.Step and the actions the core returns. Adapters
// (monitor, monitor/probe, vici) import these types; the core never imports them.

// Event is an input to the core. Every event is a plain value; the core never
// retains pointers into adapter memory.
type Event interface{ isEvent() }

// Action is an output of the core, executed by an adapter.
type Action interface{ isAction() }

// UplinkKind is the kind of link an uplink is, detected from the kernel.
type UplinkKind uint8

const (
	KindUnknown UplinkKind = iota
	KindEthernet
	KindWLAN
	KindWWAN
)

func (k UplinkKind) String() string {
	switch k {
	case KindUnknown:
		return "unknown"
	case KindEthernet:
		return "ethernet"
	case KindWLAN:
		return "wlan"
	case KindWWAN:
		return "wwan"
	}
	return "kind(" + itoa(int(k)) + ")"
}

// AddrFlags are the kernel flags of an address that matter for RFC 4621 §2
// "available address".
type AddrFlags uint8

const (
	AddrTentative AddrFlags = 1 << iota
	AddrDADFailed
	AddrDeprecated
	AddrTemporary
)

// Link is one network interface as seen by the monitor.
type Link struct {
	Index int
	Name  string
	Kind  UplinkKind
	Up    bool // administratively up and carrier (IFF_UP and IFF_RUNNING / oper up)
}

// Address is one address assigned to a link.
type Address struct {
	Prefix  netip.Prefix // address with its prefix length; Prefix.Addr() is the address
	LinkIdx int
	Flags   AddrFlags
}

// Gateway is a default route of a link: the next hop an uplink uses. A zero
// Via means a directly connected (point-to-point) default route.
type Gateway struct {
	LinkIdx int
	Via     netip.Addr
	Metric  int
	Table   int
}

// NetState is an immutable snapshot of the host's links, addresses and default
// routes, already stripped of what must never be an uplink (loopback, charon's
// TUN, virtual IPs, tunnels). Slices are sorted (links by index, addresses by
// prefix, gateways by link, family, metric).
type NetState struct {
	Links    []Link
	Addrs    []Address
	Gateways []Gateway
}

// NetReason names why a NetState changed.
type NetReason uint8

const (
	NetResync NetReason = iota // full re-read (start, overflow, dump interrupted, error)
	NetLinkAdded
	NetLinkRemoved
	NetLinkUp
	NetLinkDown
	NetAddrAdded
	NetAddrRemoved
	NetAddrFlagsChanged
	NetGatewayChanged
)

func (r NetReason) String() string {
	switch r {
	case NetResync:
		return "resync"
	case NetLinkAdded:
		return "link-added"
	case NetLinkRemoved:
		return "link-removed"
	case NetLinkUp:
		return "link-up"
	case NetLinkDown:
		return "link-down"
	case NetAddrAdded:
		return "addr-added"
	case NetAddrRemoved:
		return "addr-removed"
	case NetAddrFlagsChanged:
		return "addr-flags-changed"
	case NetGatewayChanged:
		return "gateway-changed"
	}
	return "net-reason(" + itoa(int(r)) + ")"
}

// EvNetState carries a new snapshot of the host network and the reasons it
// differs from the previous one.
type EvNetState struct {
	State   NetState
	Reasons []NetReason
}

// Pair is a local×remote address pair (a path in RFC 4621 terms).
type Pair struct {
	Local  netip.Addr
	Remote netip.Addr
}

func (p Pair) String() string { return p.Local.String() + "->" + p.Remote.String() }

// ProbeMethod is how a pair is tested.
type ProbeMethod uint8

const (
	ProbeICMP ProbeMethod = iota
	ProbeSTAMP
	ProbeIKE
)

func (m ProbeMethod) String() string {
	switch m {
	case ProbeICMP:
		return "icmp"
	case ProbeSTAMP:
		return "stamp"
	case ProbeIKE:
		return "ike"
	}
	return "method(" + itoa(int(m)) + ")"
}

// ProbeProfile is a pacing profile for a pair's prober.
type ProbeProfile uint8

const (
	ProfileActive         ProbeProfile = iota // the pair an SA is on: fast
	ProfileStandby                            // a candidate: slower
	ProfileMeteredStandby                     // a candidate on a metered uplink: very slow
)

func (p ProbeProfile) String() string {
	switch p {
	case ProfileActive:
		return "active"
	case ProfileStandby:
		return "standby"
	case ProfileMeteredStandby:
		return "metered-standby"
	}
	return "profile(" + itoa(int(p)) + ")"
}

// NATVerdict is what a probe learned about NAT on a pair.
type NATVerdict uint8

const (
	NATUnknown NATVerdict = iota
	NATNone
	NATPresent
)

func (v NATVerdict) String() string {
	switch v {
	case NATUnknown:
		return "unknown"
	case NATNone:
		return "none"
	case NATPresent:
		return "nat"
	}
	return "nat(" + itoa(int(v)) + ")"
}

// PathStats are a prober's statistics for one pair, computed by monitor/probe.
type PathStats struct {
	Sent, Received uint64
	LossRatio      float64       // over the sliding window
	SRTT           time.Duration // smoothed RTT
	RTTP50, RTTP95 time.Duration // over recent replies
	Jitter         time.Duration
	ConsecLost     int
	LastReply      time.Time
	NAT            NATVerdict
	BytesSent      uint64
	// RTO is the timeout the prober currently gives a probe of this pair
	// (adaptive, RFC 6298, or the configured fixed timeout).
	RTO time.Duration
	// Confirming: the losses counted so far are not the whole evidence yet:
	// a confirmation burst is in flight on the pair (started by the first
	// loss of a streak, or requested with ActProbeConfirm) and the streak
	// does not yet hold more losses, each waited for at least as long as
	// the burst's probes, than the burst has probes. The core waits for it
	// before it declares the pair down on consecutive losses.
	Confirming bool
	// BurstEnds is when the confirmation burst in flight resolves if the
	// pair stays silent (its last probe's deadline); zero without a burst.
	BurstEnds time.Time
}

// EvProbeResult reports the outcome of one probe on a pair. A reply counts only
// when it echoed the probe's fresh randomness (return routability).
type EvProbeResult struct {
	Pair   Pair
	Method ProbeMethod
	OK     bool          // a matching reply arrived in time; false = timed out
	RTT    time.Duration // when OK
	At     time.Time     // when the reply arrived or the timeout fired
	Stats  PathStats     // statistics after this result
}

// IKEState is charon's IKE_SA state.
type IKEState uint8

const (
	IKEUnknown IKEState = iota
	IKEConnecting
	IKEEstablished
	IKERekeying
	IKEDeleting
	IKEPassive
	IKEDestroying
	IKECreated
	IKERekeyed
)

func (s IKEState) String() string {
	switch s {
	case IKEUnknown:
		return "UNKNOWN"
	case IKEConnecting:
		return "CONNECTING"
	case IKEEstablished:
		return "ESTABLISHED"
	case IKERekeying:
		return "REKEYING"
	case IKEDeleting:
		return "DELETING"
	case IKEPassive:
		return "PASSIVE"
	case IKEDestroying:
		return "DESTROYING"
	case IKECreated:
		return "CREATED"
	case IKERekeyed:
		return "REKEYED"
	}
	return "ike-state(" + itoa(int(s)) + ")"
}

// ParseIKEState maps charon's state names.
func ParseIKEState(s string) IKEState {
	for st := IKEConnecting; st <= IKERekeyed; st++ {
		if st.String() == s {
			return st
		}
	}
	return IKEUnknown
}

// SA is charon's view of one IKE_SA.
type SA struct {
	Conn      string // connection (config) name
	UniqueID  uint32
	State     IKEState
	Initiator bool // original initiator (only these are steered)
	Local     netip.AddrPort
	Remote    netip.AddrPort
	NATLocal  bool
	NATRemote bool
	NATFake   bool
	VIPs      []netip.Addr // local virtual IPs
}

// EvSAList is a full resync of charon's SAs (list-sas). SAs not in it are gone.
type EvSAList struct{ SAs []SA }

// EvSAUp reports a new or changed IKE_SA (ike-updown up, ike-rekey new).
type EvSAUp struct{ SA SA }

// EvSADown reports an IKE_SA that went away.
type EvSADown struct {
	Conn     string
	UniqueID uint32
}

// EvIKEUpdate is charon's ike-update: the SA moved to new endpoints. It is the
// confirmation of a steer.
type EvIKEUpdate struct {
	Conn      string
	UniqueID  uint32
	NewLocal  netip.AddrPort
	NewRemote netip.AddrPort
}

// EvSARekey reports an IKE_SA rekey: the new SA replaces the old one.
type EvSARekey struct {
	OldID uint32
	New   SA
}

// EvCharon reports charon's VICI socket coming up or going away.
type EvCharon struct{ Up bool }

// Conn is a connection loaded in charon (list-conns).
type Conn struct {
	Name        string
	LocalAddrs  []string // as configured (may be %any or names)
	RemoteAddrs []netip.Addr
}

// EvConns is the full set of charon's connections.
type EvConns struct{ Conns []Conn }

// EvTimer tells the core that now >= its last NextDeadline.
type EvTimer struct{}

// EvConfig replaces the policy at runtime (config reload). Pairs, rankings and
// pending decisions are re-evaluated at once; a pair that is no longer allowed
// is left like a dead one.
type EvConfig struct{ Policy policy.Settings }

// EvPrefer is an operator override: prefer uplink Uplink for connection Conn
// until Until (mobikectl prefer CONN UPLINK for D). The preferred uplink's
// best eligible pair wins the ranking and no hold-down applies; the other
// rules (never an untested pair, NAT prevention) stay. An empty Uplink clears
// the override.
type EvPrefer struct {
	Conn   string
	Uplink string
	Until  time.Time
}

func (EvNetState) isEvent()    {}
func (EvProbeResult) isEvent() {}
func (EvSAList) isEvent()      {}
func (EvSAUp) isEvent()        {}
func (EvSADown) isEvent()      {}
func (EvIKEUpdate) isEvent()   {}
func (EvSARekey) isEvent()     {}
func (EvCharon) isEvent()      {}
func (EvConns) isEvent()       {}
func (EvTimer) isEvent()       {}
func (EvConfig) isEvent()      {}
func (EvPrefer) isEvent()      {}

// ActProbeStart starts (or retunes, if running) the prober of a pair.
type ActProbeStart struct {
	Pair    Pair
	LinkIdx int    // uplink the probes must leave through (SO_BINDTODEVICE)
	Uplink  string // its name
	Method  ProbeMethod
	Profile ProbeProfile
}

// ActProbeStop stops the prober of a pair.
type ActProbeStop struct{ Pair Pair }

// ActProbeConfirm asks the prober of a running pair for a confirmation burst
// now: a few probes a fraction of the pair's timeout apart, the first at
// once, so that within about one timeout the pair either answered (fresh
// LastReply) or shows enough consecutive losses to be declared down. A burst
// already in flight is not restarted.
type ActProbeConfirm struct{ Pair Pair }

// Severity of an alert.
type Severity uint8

const (
	SevInfo Severity = iota
	SevWarning
	SevCritical
)

func (s Severity) String() string {
	switch s {
	case SevInfo:
		return "info"
	case SevWarning:
		return "warning"
	case SevCritical:
		return "critical"
	}
	return "severity(" + itoa(int(s)) + ")"
}

// ActAlert tells the operator something the core cannot fix.
type ActAlert struct {
	Severity Severity
	Conn     string
	Reason   AlertReason
	Message  string // for humans
}

func (ActProbeStart) isAction()   {}
func (ActProbeStop) isAction()    {}
func (ActProbeConfirm) isAction() {}
func (ActAlert) isAction()        {}

func itoa(n int) string { return strconv.Itoa(n) }
