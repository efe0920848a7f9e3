package policy

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the operator configuration of mobiked: the schema, its
// documented defaults and validation. Decoding (strict YAML with file:line
// problems) lives in config_load.go, the reload diff in config_diff.go.
//
// Every field's default is written next to it and set in exactly one place,
// Default. A Config returned by Load or Default is fully resolved: fields hold
// real values, never "unset" markers, except where a field documents that its
// zero value means "by kind" (UplinkRule.Priority, UplinkRule.Metered,
// UplinkRule.ProbeProfile).

// The enum types used here (Kind, NATMode, Method, StandbyProfile) and the
// Default* constants are defined with the ranking in types.go.

// parseKind parses a kind name; "unknown" is not accepted from a file.
func parseKind(s string) (Kind, bool) {
	for k := KindEthernet; k <= KindWWAN; k++ {
		if k.String() == s {
			return k, true
		}
	}
	return KindUnknown, false
}

// Limits of the knobs. Every duration and count of a Config has a range,
// and all of them are checked in one place, Config.numbers; a value outside
// its range is refused with the range in the message.
const (
	// MinPriority and MaxPriority bound UplinkRule.Priority; higher is
	// preferred (the zero-config classes are PriorityEthernet etc.).
	MinPriority = 1
	MaxPriority = 1000
	// MaxCost bounds UplinkRule.Cost.
	MaxCost = 1000000

	// MinProbeInterval keeps a misconfigured interval from flooding an uplink
	// (RFC 4621 §5.1.3: path testing must not add to congestion);
	// MaxProbeInterval keeps a pair's state meaningful (and the jittered,
	// backed-off intervals far from overflowing a time.Duration).
	MinProbeInterval = 10 * time.Millisecond
	MaxProbeInterval = time.Hour
	// MinProbeTimeout and MaxProbeTimeout bound Probes.Timeout and the
	// adaptive timeout's bounds Probes.MinTimeout and Probes.MaxTimeout.
	MinProbeTimeout = 10 * time.Millisecond
	MaxProbeTimeout = time.Minute
	// DefaultProbeMinTimeout and DefaultProbeMaxTimeout are the default
	// floor and ceiling of the adaptive probe timeout.
	DefaultProbeMinTimeout = 100 * time.Millisecond
	DefaultProbeMaxTimeout = 2 * time.Second
	// MaxLossThreshold bounds Probes.LossThreshold (K consecutive losses).
	MaxLossThreshold = 100
	// MaxHoldDown bounds ConnConfig.HoldDown (0 = fail back at once).
	MaxHoldDown = 24 * time.Hour
	// MaxSLARTT bounds SLA.MaxRTT (0 = no limit).
	MaxSLARTT = time.Minute
	// MaxMoves bounds MoveBudget.Moves; MinMoveWindow..MaxMoveWindow
	// MoveBudget.Window.
	MaxMoves      = 1000
	MinMoveWindow = time.Second
	MaxMoveWindow = 24 * time.Hour
	// MinHookTimeout..MaxHookTimeout bound Hooks.Timeout.
	MinHookTimeout = 10 * time.Millisecond
	MaxHookTimeout = time.Hour

	// Steering rules must sit after charon's rule 220 (otherwise they pull
	// traffic away from charon's own table) and before the main table's 32766.
	MinRulePriority = 221
	MaxRulePriority = 32765
	// The steerer's layout of the rule band (vici/steer Options, built from
	// these in cmd/mobiked): the main-table rule (lookup main
	// suppress_prefixlength 0) at the band's first priority, source rules
	// RuleSourceOffset after it, prohibit rules RuleProhibitOffset after it,
	// peer rules RulePeerOffset after it, so a band needs at least
	// MinRuleBand priorities.
	RuleSourceOffset   = 1
	RuleProhibitOffset = 40
	RulePeerOffset     = 50
	MinRuleBand        = RulePeerOffset + 1
	// UplinkTableFirst..UplinkTableFirst+UplinkTables-1 are the per-uplink
	// routing tables mobiked owns besides Steering.Table.
	UplinkTableFirst = 2101
	UplinkTables     = 64

	// maxSocketPath is the size of sun_path minus the terminating NUL.
	maxSocketPath = 107
)

// DefaultConnName is the name of the connections entry whose settings every
// other connection (and every connection only known from VICI) inherits.
const DefaultConnName = "default"

// Config is the whole operator configuration.
type Config struct {
	// Uplinks are rules matched against the host's links, first match wins.
	// Links matching no rule get the defaults of their kind (DefaultUplink).
	// Default: none (every link is an uplink, ranked by kind).
	Uplinks []UplinkRule
	// Default holds the settings of every connection not listed in Conns;
	// listed connections inherit from it what they do not set.
	Default ConnConfig
	// Conns are per-connection settings, by swanctl connection name, in file
	// order. Default: none (connections come from VICI and use Default).
	Conns []ConnConfig
	// Probes paces the path probes.
	Probes Probes
	// Steering is the kernel state mobiked owns.
	Steering Steering
	// Reflector is the STAMP reflector answering peers' probes.
	Reflector Reflector
	// MetricsListen is the Prometheus /metrics and /healthz listener.
	// Default 127.0.0.1:9816; the zero AddrPort disables it.
	MetricsListen netip.AddrPort
	// ControlSocket is the unix socket of the control API (mobikectl).
	// Default /run/mobiked/mobiked.sock.
	ControlSocket string
	// Hooks are operator programs run on events (mwan3.user style).
	Hooks Hooks

	// pos maps field paths ("connections[1].uplinks[0]") to source lines, for
	// problems found after decoding. Nil for configs built in code.
	pos map[string]int
	// file is the name used in problems.
	file string
	// defaultField and connFields name the default and each Conns entry by
	// their place in the file ("connections[2]"); empty for configs built in
	// code.
	defaultField string
	connFields   []string
}

// UplinkRule sets the policy of the links it matches.
type UplinkRule struct {
	// Name matches the interface name; shell patterns as in path.Match
	// ("wwan*"). Default "" (any name). At least one of Name and Kind is set.
	Name string
	// Kind matches the detected link kind. Default KindUnknown (any kind).
	Kind Kind
	// Priority is the uplink's priority class, MinPriority..MaxPriority,
	// higher is preferred. Default 0: by kind (PriorityEthernet 300,
	// PriorityUnknown 250, PriorityWLAN 200, PriorityWWAN 100).
	Priority int
	// Cost is a relative cost of traffic on the uplink, 0..MaxCost; within a
	// priority class the cheaper uplink wins. Default 0.
	Cost int
	// Metered says the uplink is paid by volume: standby probing is slowed
	// and it loses against unmetered uplinks at equal cost. Default nil: by
	// kind (wwan is metered).
	Metered *bool
	// ProbeProfile is the pacing of standby pairs on this uplink. Default
	// StandbyAuto (metered-standby when metered, else standby).
	ProbeProfile StandbyProfile
	// Exclude keeps the link out of mobiked entirely. Default false.
	Exclude bool
}

// ID is the rule's identity, used by connections to reference it and in
// reload diffs: its Name when set, else its kind.
func (u UplinkRule) ID() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Kind.String()
}

// Matches reports whether the rule applies to a link.
func (u UplinkRule) Matches(name string, kind Kind) bool {
	if u.Kind != KindUnknown && u.Kind != kind {
		return false
	}
	if u.Name == "" {
		return true
	}
	ok, err := path.Match(u.Name, name)
	return err == nil && ok
}

// rule returns the index of the first rule matching a link, or -1.
func (c *Config) rule(name string, kind Kind) int {
	for i, u := range c.Uplinks {
		if u.Matches(name, kind) {
			return i
		}
	}
	return -1
}

// UplinkFor resolves the policy of one link: the first matching rule over
// DefaultUplink of the link's kind. Name, Kind and Priority are always set;
// Rule is the matching rule's ID.
func (c *Config) UplinkFor(name string, kind Kind) UplinkPolicy {
	p := DefaultUplink(name, kind)
	i := c.rule(name, kind)
	if i < 0 {
		return p
	}
	u := c.Uplinks[i]
	p.Rule = u.ID()
	if u.Priority != 0 {
		p.Priority = u.Priority
	}
	p.Cost = u.Cost
	if u.Metered != nil {
		p.Metered = *u.Metered
	}
	p.Profile = u.ProbeProfile
	p.Exclude = u.Exclude
	return p
}

// MoveBudget bounds the moves of one connection (anti-flap): at most Moves
// moves in any Window.
type MoveBudget struct {
	Moves  int           // default DefaultMoveBudget (3), at least 1
	Window time.Duration // default DefaultMoveWindow (60s), positive
}

// ConnConfig is the configured policy of one connection. Unlike ConnPolicy
// (the ranking's input) its fields are resolved values, not "zero = default":
// a zero HoldDown means "fail back at once" and a zero SLA.MaxRTT "no limit".
type ConnConfig struct {
	// Name is the swanctl connection name, DefaultConnName for the default.
	Name string
	// Uplinks lists the uplinks the connection may use, each the ID of an
	// uplinks entry (UplinkRule.ID) or a kind name. Default empty: every
	// uplink not excluded.
	Uplinks []string
	// PeerAddrs are peer addresses in addition to the connection's
	// remote_addrs and the SA's current remote (charon does not expose the
	// peer's ADDITIONAL_*_ADDRESS notifies). Default none.
	PeerAddrs []netip.Addr
	// NAT says whether NATed pairs may be used. Default NATAllow.
	NAT NATMode
	// SLA is the service level of a preferred pair: MaxLoss 0..1 (default
	// DefaultSLAMaxLoss 0.1), MaxRTT (default DefaultSLAMaxRTT 500ms; 0 = no
	// limit).
	SLA SLA
	// HoldDown is how long a better pair must stay good before the
	// connection moves back to it (failback); 0 fails back at once.
	// Default DefaultHoldDown (10s).
	HoldDown time.Duration
	// MoveBudget bounds moves per window.
	MoveBudget MoveBudget
	// Probe is how pairs are tested: MethodICMP (default), MethodSTAMP or
	// MethodIKE (an IKE_SA_INIT to the peer's port 500; each probe leaves a
	// half-open IKE_SA on the peer until it times out there).
	Probe Method
}

// Conn returns the configured policy of a connection: its own entry or
// Default renamed.
func (c *Config) Conn(name string) ConnConfig {
	for _, p := range c.Conns {
		if p.Name == name {
			return p
		}
	}
	d := c.Default
	d.Name = name
	return d
}

// Probes paces path probes. Profiles are per pair: active for the pair an SA
// is on, standby for candidates, metered-standby for candidates on metered
// uplinks.
type Probes struct {
	ActiveInterval         time.Duration // default 200ms
	StandbyInterval        time.Duration // default 1s
	MeteredStandbyInterval time.Duration // default 10s
	// Timeout, when set, is a fixed time a probe waits for its reply (an
	// override). Default 0: adaptive per pair, the RFC 6298 retransmission
	// timeout SRTT + 4×RTTVAR within MinTimeout..MaxTimeout (1s before the
	// first reply), doubled per timeout until the next reply (monitor/probe
	// Profiles).
	Timeout time.Duration
	// MinTimeout and MaxTimeout bound the adaptive timeout (ignored with a
	// fixed Timeout). Defaults DefaultProbeMinTimeout (100ms) and
	// DefaultProbeMaxTimeout (2s). A floor near the RTT detects a dead pair
	// sooner and calls a pair whose RTT suddenly grows past it lossy sooner
	// (the timeout doubles per loss, and a late reply still counts).
	MinTimeout, MaxTimeout time.Duration
	// LossThreshold (K) is the number of consecutive losses that declare a
	// pair down. Default DefaultDownAfter (3).
	LossThreshold int
}

// Steering is the kernel routing state mobiked owns.
type Steering struct {
	// Table is the routing table holding the peer host routes. Default 2100.
	// Must not be 0, 220 (charon), 253, 254 or 255.
	Table uint32
	// RulePriorityMin..RulePriorityMax is the band of ip-rule priorities
	// mobiked owns, within MinRulePriority..MaxRulePriority.
	// Default 1000..1099.
	RulePriorityMin int
	RulePriorityMax int
}

// Hooks are executables mobiked runs on events, with the event in the
// environment (MOBIKED_*). They run outside the core, one at a time, each
// bounded by Timeout; a slow or failing hook never delays a decision.
type Hooks struct {
	// OnMove runs after each confirmed move of a connection. Absolute path;
	// empty = none.
	OnMove string
	// Timeout kills a hook that runs longer. Default 10s.
	Timeout time.Duration
}

// DefaultHookTimeout bounds a hook when hooks.timeout is not set.
const DefaultHookTimeout = 10 * time.Second

// Reflector is the STAMP session reflector (responder side).
type Reflector struct {
	// Listen is the UDP address to answer on; the zero AddrPort (default)
	// disables the reflector. STAMP's registered port is 862.
	Listen netip.AddrPort
	// Key is the HMAC key for authenticated mode: hex digits, or an absolute
	// path of a file holding them (read by the daemon). Default "": the
	// reflector runs unauthenticated.
	Key string
}

// KeyHex returns the key's bytes when Key is given as hex.
func (r Reflector) KeyHex() ([]byte, bool) {
	b, err := decodeHex(r.Key)
	return b, err == nil && r.Key != ""
}

// KeyFile returns the key file's path when Key is given as a path.
func (r Reflector) KeyFile() (string, bool) {
	return r.Key, strings.HasPrefix(r.Key, "/")
}

// Default returns the zero-config configuration: connections come from VICI
// with the default policy, uplinks from netlink ranked by kind.
func Default() *Config {
	return &Config{
		Default: ConnConfig{
			Name:       DefaultConnName,
			NAT:        NATAllow,
			SLA:        SLA{MaxLoss: DefaultSLAMaxLoss, MaxRTT: DefaultSLAMaxRTT},
			HoldDown:   DefaultHoldDown,
			MoveBudget: MoveBudget{Moves: DefaultMoveBudget, Window: DefaultMoveWindow},
			Probe:      MethodICMP,
		},
		Probes: Probes{
			ActiveInterval:         200 * time.Millisecond,
			StandbyInterval:        time.Second,
			MeteredStandbyInterval: 10 * time.Second,
			MinTimeout:             DefaultProbeMinTimeout,
			MaxTimeout:             DefaultProbeMaxTimeout,
			LossThreshold:          DefaultDownAfter,
		},
		Steering: Steering{
			Table:           2100,
			RulePriorityMin: 1000,
			RulePriorityMax: 1099,
		},
		MetricsListen: netip.MustParseAddrPort("127.0.0.1:9816"),
		ControlSocket: "/run/mobiked/mobiked.sock",
		Hooks:         Hooks{Timeout: DefaultHookTimeout},
	}
}

// Clone returns a deep copy, so that the core can hold a Config that nobody
// else mutates.
func (c *Config) Clone() *Config {
	n := *c
	n.Uplinks = slices.Clone(c.Uplinks)
	for i, u := range n.Uplinks {
		if u.Metered != nil {
			m := *u.Metered
			n.Uplinks[i].Metered = &m
		}
	}
	n.Default = c.Default.clone()
	n.Conns = slices.Clone(c.Conns)
	for i := range n.Conns {
		n.Conns[i] = n.Conns[i].clone()
	}
	n.pos, n.file, n.defaultField, n.connFields = nil, "", "", nil
	return &n
}

func (p ConnConfig) clone() ConnConfig {
	p.Uplinks = slices.Clone(p.Uplinks)
	p.PeerAddrs = slices.Clone(p.PeerAddrs)
	return p
}

// Validate checks the configuration and returns a *ConfigError listing every
// problem, or nil.
func (c *Config) Validate() error {
	v := validator{file: c.file, pos: c.pos, problems: &problemSet{}}
	c.validate(&v)
	return v.problems.err(c.file)
}

// validator collects problems found after decoding, with the source line of
// the field when known.
type validator struct {
	file     string
	pos      map[string]int
	problems *problemSet
}

func (v *validator) addf(field, format string, args ...any) {
	v.problems.add(Problem{
		File:  v.file,
		Line:  v.line(field),
		Field: field,
		Msg:   fmt.Sprintf(format, args...),
	})
}

// line returns the line of field, or of its closest known parent.
func (v *validator) line(field string) int {
	for f := field; f != ""; {
		if l, ok := v.pos[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// firstAt returns " (first at line N)" for the field, or "" when unknown.
func (v *validator) firstAt(field string) string {
	if l := v.line(field); l > 0 {
		return fmt.Sprintf(" (first at line %d)", l)
	}
	return ""
}

func (c *Config) validate(v *validator) {
	ids := map[string]string{} // rule ID -> field of its first entry
	for i, u := range c.Uplinks {
		f := fmt.Sprintf("uplinks[%d]", i)
		if u.Name == "" && u.Kind == KindUnknown {
			v.addf(f, "uplink needs a name or a kind")
			continue
		}
		if _, err := path.Match(u.Name, ""); err != nil {
			v.addf(f+".name", "bad name pattern %q", u.Name)
		}
		if u.Kind > KindWWAN {
			v.addf(f+".kind", "unknown kind %s", u.Kind)
		}
		if first, dup := ids[u.ID()]; dup {
			v.addf(f, "duplicate uplink %q%s", u.ID(), v.firstAt(first))
		} else {
			ids[u.ID()] = f
		}
		if u.ProbeProfile > StandbyMetered {
			v.addf(f+".probe_profile", "unknown probe profile %s", u.ProbeProfile)
		}
	}

	def := "connections.default"
	if c.defaultField != "" {
		def = c.defaultField
	}
	c.validateConn(v, def, c.Default, ids)
	names := map[string]string{} // connection name -> field of its first entry
	for i, p := range c.Conns {
		f := fmt.Sprintf("connections[%d]", i)
		if len(c.connFields) == len(c.Conns) {
			f = c.connFields[i]
		}
		switch {
		case p.Name == "":
			v.addf(f+".name", "connection needs a name")
		case p.Name == DefaultConnName:
			v.addf(f+".name", "connection %q is reserved for the defaults", DefaultConnName)
		case names[p.Name] != "":
			v.addf(f+".name", "duplicate connection %q%s", p.Name, v.firstAt(names[p.Name]))
		default:
			names[p.Name] = f
		}
		c.validateConn(v, f, p, ids)
	}

	for _, n := range c.numbers() {
		n.check(v)
	}
	if p := c.Probes; p.Timeout == 0 && p.MinTimeout > p.MaxTimeout { // a fixed timeout ignores them
		v.addf("probes.min_timeout", "timeout floor %s is above the ceiling %s (probes.max_timeout)", p.MinTimeout, p.MaxTimeout)
	}
	s := c.Steering
	switch s.Table {
	case 220, 253, 254, 255:
		v.addf("steering.table", "table %d is reserved", s.Table)
	}
	if s.Table >= UplinkTableFirst && s.Table < UplinkTableFirst+UplinkTables {
		v.addf("steering.table", "table %d is one of mobiked's uplink tables %d..%d",
			s.Table, UplinkTableFirst, UplinkTableFirst+UplinkTables-1)
	}
	switch band := s.RulePriorityMax - s.RulePriorityMin + 1; {
	case band <= 0:
		v.addf("steering.rule_priority", "rule priority range %d..%d is empty", s.RulePriorityMin, s.RulePriorityMax)
	case band < MinRuleBand:
		v.addf("steering.rule_priority", "rule priority band %d..%d has %d priorities, need at least %d "+
			"(main-table rule at min, source rules at min+%d, prohibit rules at min+%d, peer rules at min+%d)",
			s.RulePriorityMin, s.RulePriorityMax, band, MinRuleBand, RuleSourceOffset, RuleProhibitOffset, RulePeerOffset)
	}

	if k := c.Reflector.Key; k != "" && !strings.HasPrefix(k, "/") {
		if b, err := decodeHex(k); err != nil {
			v.addf("reflector.key", "key must be hex digits or an absolute file path: %v", err)
		} else if len(b) < 16 {
			v.addf("reflector.key", "key is %d bytes, need at least 16", len(b))
		}
	}
	if c.Reflector.Key != "" && !c.Reflector.Listen.IsValid() {
		v.addf("reflector.key", "key set but reflector.listen is empty")
	}

	if err := CheckSocketPath(c.ControlSocket); err != nil {
		v.addf("control.socket", "%v", err)
	}
	if h := c.Hooks.OnMove; h != "" && (!strings.HasPrefix(h, "/") || strings.ContainsRune(h, 0)) {
		v.addf("hooks.on_move", "hook %q must be an absolute path", h)
	}
}

// CheckSocketPath checks a unix socket path of the control API: absolute,
// short enough for sun_path, no NUL.
func CheckSocketPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("socket path %q must be absolute", p)
	case len(p) > maxSocketPath:
		return fmt.Errorf("socket path is %d bytes, the limit is %d", len(p), maxSocketPath)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("socket path contains a NUL byte")
	}
	return nil
}

func (c *Config) validateConn(v *validator, f string, p ConnConfig, uplinkIDs map[string]string) {
	for j, u := range p.Uplinks {
		if _, isKind := parseKind(u); !isKind && uplinkIDs[u] == "" {
			v.addf(fmt.Sprintf("%s.uplinks[%d]", f, j), "unknown uplink %q (not an uplinks entry nor a kind)", u)
		}
	}
	seen := map[netip.Addr]bool{}
	for j, a := range p.PeerAddrs {
		ff := fmt.Sprintf("%s.peer_addresses[%d]", f, j)
		switch {
		case !a.IsValid():
			v.addf(ff, "invalid address")
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			v.addf(ff, "address %s cannot be a peer", a)
		case a.Zone() != "":
			v.addf(ff, "address %s must not have a zone", a)
		case seen[a]:
			v.addf(ff, "duplicate peer address %s", a)
		}
		seen[a] = true
	}
	if p.NAT > NATForbid {
		v.addf(f+".nat", "unknown nat mode %s", p.NAT)
	}
	if p.Probe > MethodIKE { // MethodDefault is icmp
		v.addf(f+".probe", "unknown probe method %s", p.Probe)
	}
}

// decodeHex decodes an even number of hex digits (encoding/hex would do, but
// its error messages name byte offsets; ours name the problem).
func decodeHex(s string) ([]byte, error) {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return nil, fmt.Errorf("%q is not a hex digit", r)
		}
	}
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd number of hex digits")
	}
	b := make([]byte, len(s)/2)
	for i := 0; i < len(s); i += 2 {
		x, err := strconv.ParseUint(s[i:i+2], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("%q is not hex", s[i:i+2])
		}
		b[i/2] = byte(x)
	}
	return b, nil
}

// number is one duration, count or ratio of a Config with its range.
type number struct {
	field   string // where it is in the file, e.g. "probes.timeout"
	goField string // where it is in Config, e.g. "Probes.Timeout" (TestEveryNumberHasARange)
	noun    string
	kind    numberKind
	val     float64 // ratios
	n       int64   // durations and counts
	lo, hi  int64   // durations and counts; ratios are 0..1
	zero    bool    // 0 is accepted besides the range (means "by kind")
	// unset: 0 is accepted when the file does not write the field (the
	// default it stands for is not a number, e.g. the adaptive timeout)
	unset bool
}

type numberKind uint8

const (
	numCount numberKind = iota
	numDuration
	numRatio
)

func dur(field, goField, noun string, d, lo, hi time.Duration) number {
	return number{field: field, goField: goField, noun: noun, kind: numDuration, n: int64(d), lo: int64(lo), hi: int64(hi)}
}

func count(field, goField, noun string, x, lo, hi int64) number {
	return number{field: field, goField: goField, noun: noun, kind: numCount, n: x, lo: lo, hi: hi}
}

func (n number) check(v *validator) {
	if n.unset && n.n == 0 {
		if _, written := v.pos[n.field]; !written {
			return
		}
	}
	switch n.kind {
	case numRatio:
		if !(n.val >= 0 && n.val <= 1) { // NaN fails too
			v.addf(n.field, "%s %v out of range 0..1", n.noun, n.val)
		}
	case numDuration:
		if n.n < n.lo || n.n > n.hi {
			v.addf(n.field, "%s %s out of range %s..%s", n.noun, time.Duration(n.n), time.Duration(n.lo), time.Duration(n.hi))
		}
	default:
		if (n.n < n.lo || n.n > n.hi) && !(n.zero && n.n == 0) {
			v.addf(n.field, "%s %d out of range %d..%d", n.noun, n.n, n.lo, n.hi)
		}
	}
}

// numbers lists every duration, count and ratio of c with its range: the one
// place where they are checked.
func (c *Config) numbers() []number {
	var ns []number
	for i, u := range c.Uplinks {
		f := fmt.Sprintf("uplinks[%d]", i)
		pr := count(f+".priority", "Uplinks.Priority", "priority", int64(u.Priority), MinPriority, MaxPriority)
		pr.zero = true // by kind
		ns = append(ns, pr, count(f+".cost", "Uplinks.Cost", "cost", int64(u.Cost), 0, MaxCost))
	}
	conn := func(f, g string, p ConnConfig) {
		ns = append(ns,
			number{field: f + ".sla.max_loss", goField: g + ".SLA.MaxLoss", noun: "max loss", kind: numRatio, val: p.SLA.MaxLoss},
			dur(f+".sla.max_rtt", g+".SLA.MaxRTT", "max rtt", p.SLA.MaxRTT, 0, MaxSLARTT),
			dur(f+".hold_down", g+".HoldDown", "hold-down", p.HoldDown, 0, MaxHoldDown),
			count(f+".move_budget.moves", g+".MoveBudget.Moves", "move budget", int64(p.MoveBudget.Moves), 1, MaxMoves),
			dur(f+".move_budget.window", g+".MoveBudget.Window", "move budget window", p.MoveBudget.Window, MinMoveWindow, MaxMoveWindow),
		)
	}
	def := "connections.default"
	if c.defaultField != "" {
		def = c.defaultField
	}
	conn(def, "Default", c.Default)
	for i, p := range c.Conns {
		f := fmt.Sprintf("connections[%d]", i)
		if len(c.connFields) == len(c.Conns) {
			f = c.connFields[i]
		}
		conn(f, "Conns", p)
	}
	p, s := c.Probes, c.Steering
	timeout := dur("probes.timeout", "Probes.Timeout", "timeout", p.Timeout, MinProbeTimeout, MaxProbeTimeout)
	timeout.unset = true // adaptive
	return append(ns,
		dur("probes.active_interval", "Probes.ActiveInterval", "interval", p.ActiveInterval, MinProbeInterval, MaxProbeInterval),
		dur("probes.standby_interval", "Probes.StandbyInterval", "interval", p.StandbyInterval, MinProbeInterval, MaxProbeInterval),
		dur("probes.metered_standby_interval", "Probes.MeteredStandbyInterval", "interval", p.MeteredStandbyInterval, MinProbeInterval, MaxProbeInterval),
		timeout,
		dur("probes.min_timeout", "Probes.MinTimeout", "timeout floor", p.MinTimeout, MinProbeTimeout, MaxProbeTimeout),
		dur("probes.max_timeout", "Probes.MaxTimeout", "timeout ceiling", p.MaxTimeout, MinProbeTimeout, MaxProbeTimeout),
		count("probes.loss_threshold", "Probes.LossThreshold", "loss threshold", int64(p.LossThreshold), 1, MaxLossThreshold),
		count("steering.table", "Steering.Table", "table", int64(s.Table), 1, math.MaxUint32),
		count("steering.rule_priority.min", "Steering.RulePriorityMin", "rule priority", int64(s.RulePriorityMin), MinRulePriority, MaxRulePriority),
		count("steering.rule_priority.max", "Steering.RulePriorityMax", "rule priority", int64(s.RulePriorityMax), MinRulePriority, MaxRulePriority),
		dur("hooks.timeout", "Hooks.Timeout", "hook timeout", c.Hooks.Timeout, MinHookTimeout, MaxHookTimeout),
	)
}
