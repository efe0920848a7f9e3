package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Defaults, in one place. A zero value in any policy input field (ConnPolicy,
// PathPolicy, Settings) means "use the default written here".
const (
	// DefaultHoldDown is how long a better-ranked pair must have been stably
	// operational before the core leaves a working pair for it.
	DefaultHoldDown = 10 * time.Second
	// DefaultMoveBudget moves per DefaultMoveWindow bound flapping.
	DefaultMoveBudget = 3
	DefaultMoveWindow = 60 * time.Second
	// DefaultSLAMaxLoss and DefaultSLAMaxRTT are a connection's SLA when it
	// sets none. They are also the "degraded" thresholds of a pair.
	DefaultSLAMaxLoss = 0.10
	DefaultSLAMaxRTT  = 500 * time.Millisecond
	// DefaultDownAfter consecutive lost probes mark a pair down.
	DefaultDownAfter = 3
	// DefaultDownLoss is the loss ratio over the prober's window at which a
	// pair is down even though some replies still arrive.
	DefaultDownLoss = 0.5
	// DefaultSteerTimeout is how long charon gets to report (ike-update) that
	// it moved the SAs of a connection onto the steered pair.
	DefaultSteerTimeout = 3 * time.Second
	// DefaultSteerBackoff is the first wait after a failed steer; it doubles
	// per consecutive failure up to DefaultSteerBackoffMax.
	DefaultSteerBackoff    = 10 * time.Second
	DefaultSteerBackoffMax = 5 * time.Minute
)

// Zero-config uplink priorities: ethernet > unknown > wlan > wwan. Higher
// priority wins.
const (
	PriorityEthernet = 300
	PriorityUnknown  = 250
	PriorityWLAN     = 200
	PriorityWWAN     = 100
)

// Kind is the kind of link an uplink is (mirrors mobike.UplinkKind; policy
// cannot import mobike).
type Kind uint8

const (
	KindUnknown Kind = iota
	KindEthernet
	KindWLAN
	KindWWAN
)

func (k Kind) String() string {
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
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// StandbyProfile selects how gently a pair on this uplink is probed while no
// SA uses it.
type StandbyProfile uint8

const (
	StandbyAuto    StandbyProfile = iota // metered uplinks: metered, others: normal
	StandbyNormal                        // standby pacing even when metered
	StandbyMetered                       // metered (slowest) pacing even when not metered
)

func (p StandbyProfile) String() string {
	switch p {
	case StandbyAuto:
		return "auto"
	case StandbyNormal:
		return "standby"
	case StandbyMetered:
		return "metered-standby"
	}
	return "standby-profile(" + strconv.Itoa(int(p)) + ")"
}

// UplinkPolicy is the effective policy of one uplink (a link, by name).
type UplinkPolicy struct {
	Name     string
	Kind     Kind   // detected kind (matched by ConnPolicy.AllowedUplinks kind names)
	Rule     string // ID of the config rule that matched, "" for none
	Priority int    // priority class; higher wins. 0 = the kind's default
	Cost     int    // lower wins within a priority class
	Metered  bool   // loses against unmetered at equal cost; probed gently
	Exclude  bool   // never an uplink: its addresses are not locally operational
	Profile  StandbyProfile
}

// Metered reports the effective standby pacing: true = metered-standby.
func (u UplinkPolicy) MeteredStandby() bool {
	switch u.Profile {
	case StandbyNormal:
		return false
	case StandbyMetered:
		return true
	}
	return u.Metered
}

// DefaultUplink is the zero-config policy of an uplink of the given kind:
// ethernet > wlan > wwan, wwan metered.
func DefaultUplink(name string, kind Kind) UplinkPolicy {
	u := UplinkPolicy{Name: name, Kind: kind}
	switch kind {
	case KindEthernet:
		u.Priority = PriorityEthernet
	case KindWLAN:
		u.Priority = PriorityWLAN
	case KindWWAN:
		u.Priority = PriorityWWAN
		u.Metered = true
	default:
		u.Priority = PriorityUnknown
	}
	return u
}

// NATMode says whether a connection may use a pair with a NAT on it.
type NATMode uint8

const (
	NATAllow NATMode = iota
	NATForbid
)

func (m NATMode) String() string {
	switch m {
	case NATAllow:
		return "allow"
	case NATForbid:
		return "forbid"
	}
	return "nat-mode(" + strconv.Itoa(int(m)) + ")"
}

// Method is how a connection's pairs are probed (mirrors mobike.ProbeMethod
// with a "default" zero value).
type Method uint8

const (
	MethodDefault Method = iota // icmp
	MethodICMP
	MethodSTAMP
	MethodIKE
)

func (m Method) String() string {
	switch m {
	case MethodDefault:
		return "default"
	case MethodICMP:
		return "icmp"
	case MethodSTAMP:
		return "stamp"
	case MethodIKE:
		return "ike"
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// SLA is a service level: a pair meets it when its loss ratio is at most
// MaxLoss and its smoothed RTT at most MaxRTT.
type SLA struct {
	MaxLoss float64       // 0..1; 0 = DefaultSLAMaxLoss
	MaxRTT  time.Duration // 0 = DefaultSLAMaxRTT
}

// WithDefaults fills zero fields.
func (s SLA) WithDefaults() SLA {
	if s.MaxLoss == 0 {
		s.MaxLoss = DefaultSLAMaxLoss
	}
	if s.MaxRTT == 0 {
		s.MaxRTT = DefaultSLAMaxRTT
	}
	return s
}

// Met reports whether loss and rtt meet the SLA (zero fields are defaults).
func (s SLA) Met(loss float64, rtt time.Duration) bool {
	s = s.WithDefaults()
	return loss <= s.MaxLoss && rtt <= s.MaxRTT
}

// SLAHysteresis is the margin a connection's current pair gets on its SLA:
// it keeps meeting the SLA until its loss or RTT exceeds the limit by half
// again, so that a path whose windowed loss merely fluctuates around the
// limit (5 % round-trip loss against the default 10 %: measured, one move in
// ten loss5 bench runs) is not left for a candidate just under it. A
// candidate has to meet the SLA itself.
const SLAHysteresis = 1.5

// MetCurrent is Met for a connection's current pair (SLAHysteresis).
func (s SLA) MetCurrent(loss float64, rtt time.Duration) bool {
	s = s.WithDefaults()
	return loss <= s.MaxLoss*SLAHysteresis && float64(rtt) <= float64(s.MaxRTT)*SLAHysteresis
}

// ConnPolicy is the policy for one connection (charon connection name), the
// ranker's and the core's input. The core steers all SAs of a connection
// together.
type ConnPolicy struct {
	Name string
	// AllowedUplinks: uplink names, config rule IDs or kind names; empty =
	// all uplinks.
	AllowedUplinks []string
	ExtraPeers     []netip.Addr // peer addresses beyond charon's remote_addrs
	NAT            NATMode
	SLA            SLA
	HoldDown       time.Duration // 0 = DefaultHoldDown; negative (NoHoldDown) = none; see Hold
	MoveBudget     int           // 0 = DefaultMoveBudget
	MoveWindow     time.Duration // 0 = DefaultMoveWindow
	Method         Method
}

// NoHoldDown is a HoldDown that fails back at once (0 means the default).
const NoHoldDown = time.Duration(-1)

// Hold is the effective hold-down: HoldDown, or 0 for NoHoldDown.
func (c ConnPolicy) Hold() time.Duration { return max(c.HoldDown, 0) }

// WithDefaults returns a copy with every zero field set to its default and
// NoHoldDown resolved to 0. Apply it once: a resolved 0 hold-down would become
// the default again (Settings.Conn applies it).
func (c ConnPolicy) WithDefaults() ConnPolicy {
	c.SLA = c.SLA.WithDefaults()
	switch {
	case c.HoldDown == 0:
		c.HoldDown = DefaultHoldDown
	case c.HoldDown < 0:
		c.HoldDown = 0
	}
	if c.MoveBudget <= 0 {
		c.MoveBudget = DefaultMoveBudget
	}
	if c.MoveWindow <= 0 {
		c.MoveWindow = DefaultMoveWindow
	}
	if c.Method == MethodDefault {
		c.Method = MethodICMP
	}
	c.AllowedUplinks = slices.Clone(c.AllowedUplinks)
	c.ExtraPeers = slices.Clone(c.ExtraPeers)
	return c
}

// Allows reports whether the connection may use the uplink: AllowedUplinks is
// empty or names it, its config rule, or its kind.
func (c ConnPolicy) Allows(u UplinkPolicy) bool {
	if len(c.AllowedUplinks) == 0 {
		return true
	}
	for _, a := range c.AllowedUplinks {
		if a == u.Name || (u.Rule != "" && a == u.Rule) || a == u.Kind.String() {
			return true
		}
	}
	return false
}

// PathPolicy sets when a pair (shared by all connections) changes state.
type PathPolicy struct {
	DownAfter int     // consecutive losses; 0 = DefaultDownAfter
	DownLoss  float64 // loss ratio over the window; 0 = DefaultDownLoss
	Degraded  SLA     // breached while replies come = degraded; zero = defaults
}

// WithDefaults fills zero fields.
func (p PathPolicy) WithDefaults() PathPolicy {
	if p.DownAfter <= 0 {
		p.DownAfter = DefaultDownAfter
	}
	if p.DownLoss <= 0 {
		p.DownLoss = DefaultDownLoss
	}
	p.Degraded = p.Degraded.WithDefaults()
	return p
}

// Settings is the whole policy the core runs with: what the config file says,
// converted (policy/config*.go), or the zero value for zero-config operation.
type Settings struct {
	// UplinkFor resolves a link to its policy (e.g. (*Config).UplinkFor,
	// which matches name patterns). Nil: look the name up in Uplinks.
	UplinkFor func(name string, kind Kind) UplinkPolicy
	Uplinks   []UplinkPolicy // by name; uplinks not listed get DefaultUplink(kind)
	Conns     []ConnPolicy   // by name; connections not listed get Default (renamed)
	Default   ConnPolicy     // template for connections not listed (Name ignored)
	Path      PathPolicy

	SteerTimeout    time.Duration // 0 = DefaultSteerTimeout
	SteerBackoff    time.Duration // 0 = DefaultSteerBackoff
	SteerBackoffMax time.Duration // 0 = DefaultSteerBackoffMax
}

// WithDefaults returns a deep copy with the path and steering fields set to
// their defaults. Connection policies stay as given: Conn resolves them.
func (s Settings) WithDefaults() Settings {
	s.Uplinks = slices.Clone(s.Uplinks)
	conns := make([]ConnPolicy, len(s.Conns))
	for i, c := range s.Conns {
		c.AllowedUplinks = slices.Clone(c.AllowedUplinks)
		c.ExtraPeers = slices.Clone(c.ExtraPeers)
		conns[i] = c
	}
	s.Conns = conns
	s.Default.AllowedUplinks = slices.Clone(s.Default.AllowedUplinks)
	s.Default.ExtraPeers = slices.Clone(s.Default.ExtraPeers)
	s.Default.Name = ""
	s.Path = s.Path.WithDefaults()
	if s.SteerTimeout <= 0 {
		s.SteerTimeout = DefaultSteerTimeout
	}
	if s.SteerBackoff <= 0 {
		s.SteerBackoff = DefaultSteerBackoff
	}
	if s.SteerBackoffMax <= 0 {
		s.SteerBackoffMax = DefaultSteerBackoffMax
	}
	return s
}

// Conn returns the policy of the named connection with its defaults applied
// (ConnPolicy.WithDefaults).
func (s Settings) Conn(name string) ConnPolicy {
	for _, c := range s.Conns {
		if c.Name == name {
			return c.WithDefaults()
		}
	}
	c := s.Default.WithDefaults()
	c.Name = name
	return c
}

// Uplink returns the policy of the named uplink: UplinkFor when set, else the
// Uplinks entry of that name, else the kind's default. Priority 0 becomes the
// kind's default priority; Name and Kind are always set.
func (s Settings) Uplink(name string, kind Kind) UplinkPolicy {
	var u UplinkPolicy
	found := false
	if s.UplinkFor != nil {
		u, found = s.UplinkFor(name, kind), true
	} else {
		for _, x := range s.Uplinks {
			if x.Name == name {
				u, found = x, true
				break
			}
		}
	}
	if !found {
		return DefaultUplink(name, kind)
	}
	u.Name, u.Kind = name, kind
	if u.Priority == 0 {
		u.Priority = DefaultUplink(name, kind).Priority
	}
	return u
}

// Candidate is one local×remote pair as the ranker sees it for one
// connection. The core fills it from the pair's path state and probe stats.
type Candidate struct {
	Local, Remote netip.Addr
	Uplink        UplinkPolicy

	// Usable: the pair is operational or degraded (a probe reply carrying
	// fresh randomness proved bidirectional connectivity and it is not down).
	Usable bool
	// State is the pair's path state name, for explanations only.
	State string
	// NAT: a probe saw a NAT on the pair.
	NAT bool
	// Deprecated: the local address is deprecated (preferred lifetime 0).
	Deprecated bool
	// Loss is the loss ratio over the prober's window; RTT the smoothed RTT.
	Loss float64
	RTT  time.Duration
	// Current: the connection's SAs are on this pair now. Among otherwise
	// equal candidates the current one wins (no move for nothing).
	Current bool
	// CurrentIs4: the connection's SAs are on an IPv4 pair now, even when
	// that pair is no longer a candidate (its link went away): the ranking
	// keeps the SA's address family rather than preferring IPv6.
	CurrentIs4 bool
}

// Ranked is a candidate with its place in the ranking.
type Ranked struct {
	Candidate
	Rank int // 1 = best
	// Eligible: the connection may be steered onto this pair (allowed,
	// usable, not a forbidden NAT, uplink not excluded).
	Eligible bool
	// SLAMet: loss and RTT meet the connection's SLA.
	SLAMet bool
	// Reason explains the place: why it is not eligible, or which key put it
	// below the previous candidate ("priority 200 vs 300").
	Reason string
}

// Ranker orders a connection's candidate pairs. Implementations must be pure
// and deterministic: equal inputs give equal outputs, whatever the input
// order. conn has its defaults applied (ConnPolicy.WithDefaults). Rank must
// not keep cands (the caller reuses the slice); the result is the caller's.
type Ranker interface {
	Rank(conn ConnPolicy, cands []Candidate) []Ranked
}
