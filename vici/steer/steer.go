// Package steer is mobiked's steering actuator: it owns one routing table, a
// table per uplink and a band of rule priorities after charon's rule 220, and
// makes the kernel equal to the core's desired routing state
// (mobike.Desired), which makes charon (prefer_best_path = yes, kernel lookup
// mode, process_rules = yes) move IKE_SAs to the chosen address pairs.
//
// Layout (defaults):
//
//	pref 1000 lookup main suppress_prefixlength 0 main's specific routes first (per family)
//	pref 1001 from LOCAL lookup UPLINK_TABLE      per local address (source rules)
//	pref 1040 to R' prohibit                      peer addresses taken away from charon
//	pref 1050 to R lookup 2100                    peer rules
//	table 2100: R via NEXTHOP dev UPLINK src L    host routes (one per steering group)
//	table 2101+: default via GW dev UPLINK        per uplink
//
// The rule at 1000 keeps the source rules from hijacking traffic: a packet
// sourced from an uplink address to a destination main has a more specific
// route for (a LAN behind the host, a static route) follows main; only what
// main would send by its default route goes through the uplink table. (So a
// peer address reachable through a more specific route of main is routed by
// main, not steered: that route is the operator's explicit choice.)
//
// Set is level-triggered: it reads what the kernel holds of ours, adds what
// is missing or different (routes before the rules that point to them, and a
// prohibit no longer wanted lifted before a new one is laid: a remote move
// never leaves the peer without a reachable address), then removes what is
// not wanted, so calling it again with the same state changes
// nothing, and the first Set after a start replaces whatever a previous run
// left (including a half-applied change after a crash). Everything it installs
// carries protocol 77 (routes and rules); it only ever reads, changes or
// deletes entries with that protocol in its tables and priority band.
//
// Run applies the latest submitted state off the caller's goroutine and
// reports each application as a mobike.EvRoutingApplied event; it re-applies
// the last state every Resync to repair drift.
package steer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// Defaults of Options.
const (
	DefaultTable           = 2100
	DefaultUplinkTableBase = 2101
	DefaultUplinkTables    = 64
	DefaultMainPrio        = 1000 // lookup main suppress_prefixlength 0
	DefaultSourcePrio      = 1001 // source rules 1001–1039
	DefaultProhibitPrio    = 1040 // prohibit rules 1040–1049
	DefaultPeerPrio        = 1050 // peer rules 1050–1099
	DefaultPrioMax         = 1099
	// DefaultProtocol marks mobiked's routes and rules ('M').
	DefaultProtocol = 77
	// DefaultResync is how often Run re-applies the last state.
	DefaultResync = 30 * time.Second
)

// Options configure a Steerer. Zero values mean the defaults.
type Options struct {
	// Handle is the netlink handle to use (create it inside the target netns
	// or with netlink.NewHandleAt). Nil: a handle in the current netns.
	Handle          *netlink.Handle
	Logger          *slog.Logger
	Table           int
	UplinkTableBase int
	UplinkTables    int
	MainPrio        int // the "lookup main suppress_prefixlength 0" rules; default SourcePrio-1
	SourcePrio      int
	ProhibitPrio    int
	PeerPrio        int
	PrioMax         int // last priority of the band (all kinds)
	Protocol        uint8
	// Resync is how often Run re-applies the last state (repairing what
	// someone else changed in mobiked's tables and band). Default 30s.
	Resync time.Duration

	// FaultAfterOps, when positive, calls Fault after that many kernel
	// changes (adds, replaces, deletes) counted from the first Set. A test
	// hook for crashes in the middle of an apply (mobiked sets it from
	// MOBIKED_TEST_STEER_KILL_AFTER, see cmd/mobiked); never configuration.
	FaultAfterOps int
	Fault         func()
}

type ruleKey struct {
	Prio     int
	Fam      int // unix.AF_INET or AF_INET6
	Src, Dst netip.Prefix
	Table    int // 0 for prohibit
	Prohibit bool
	// SuppressDefault: suppress_prefixlength 0 (ignore a default route found
	// in Table).
	SuppressDefault bool
}

type routeKey struct {
	Table int
	Dst   netip.Prefix
}

type routeVal struct {
	LinkIdx int
	Gw      netip.Addr
	Src     netip.Addr
}

type entries struct {
	rules  map[ruleKey]struct{}
	routes map[routeKey]routeVal
}

func newEntries() entries {
	return entries{rules: map[ruleKey]struct{}{}, routes: map[routeKey]routeVal{}}
}

// withDefaults fills in zero values and validates the layout.
func (o Options) withDefaults() (Options, error) {
	if o.Table == 0 {
		o.Table = DefaultTable
	}
	if o.UplinkTableBase == 0 {
		o.UplinkTableBase = DefaultUplinkTableBase
	}
	if o.UplinkTables == 0 {
		o.UplinkTables = DefaultUplinkTables
	}
	if o.SourcePrio == 0 {
		o.SourcePrio = DefaultSourcePrio
	}
	if o.MainPrio == 0 {
		o.MainPrio = o.SourcePrio - 1
	}
	if o.ProhibitPrio == 0 {
		o.ProhibitPrio = DefaultProhibitPrio
	}
	if o.PeerPrio == 0 {
		o.PeerPrio = DefaultPeerPrio
	}
	if o.PrioMax == 0 {
		o.PrioMax = DefaultPrioMax
	}
	if o.Protocol == 0 {
		o.Protocol = DefaultProtocol
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !(o.MainPrio < o.SourcePrio && o.SourcePrio <= o.ProhibitPrio && o.ProhibitPrio <= o.PeerPrio && o.PeerPrio <= o.PrioMax) {
		return o, errors.New("steer: priorities must be main < source <= prohibit <= peer <= max")
	}
	if o.MainPrio <= 220 {
		return o, fmt.Errorf("steer: rule priority %d must come after charon's rule 220", o.MainPrio)
	}
	if o.Table >= o.UplinkTableBase && o.Table < o.UplinkTableBase+o.UplinkTables {
		return o, errors.New("steer: table overlaps the uplink tables")
	}
	for _, t := range []int{unix.RT_TABLE_MAIN, unix.RT_TABLE_LOCAL, unix.RT_TABLE_DEFAULT, 220} {
		if t == o.Table || (t >= o.UplinkTableBase && t < o.UplinkTableBase+o.UplinkTables) {
			return o, fmt.Errorf("steer: table %d is not mobiked's to own", t)
		}
	}
	return o, nil
}

// Check reports whether New would accept o's layout (tables and rule
// priorities, zero values filled in), without touching the kernel.
func (o Options) Check() error {
	_, err := o.withDefaults()
	return err
}

// kernel is the part of *netlink.Handle the steerer uses (a fake in unit
// tests records the order of operations).
type kernel interface {
	RuleList(family int) ([]netlink.Rule, error)
	RuleAdd(*netlink.Rule) error
	RuleDel(*netlink.Rule) error
	RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error)
	RouteAdd(*netlink.Route) error
	RouteReplace(*netlink.Route) error
	RouteDel(*netlink.Route) error
}

// Steerer installs and removes mobiked's routing state.
type Steerer struct {
	o      Options
	h      kernel
	log    *slog.Logger
	events chan mobike.Event

	// mu guards the fields below (Set, Cleanup and Dump may be called from
	// any goroutine; Run serialises its own applications).
	mu     sync.Mutex
	tables map[string]int // uplink name -> table, sticky
	set    bool           // a state was set since the start
	want   entries        // the state of the last Set
	owner  map[any]string // entry key -> steering group, for errors
	ops    int            // kernel changes so far (FaultAfterOps)

	// latest is the state submitted to Run and not applied yet.
	smu    sync.Mutex
	latest *mobike.ActRouting
	arm    *armReq // a RequestArmRoam not carried out yet
	wake   chan struct{}
	arms   atomic.Uint64
	// applied is the generation Run applied last (fully or not).
	applied atomic.Uint64
}

// New creates a Steerer. It changes nothing in the kernel: what a previous
// run left stays (the tunnels stay where they are) until the first Set
// replaces it.
func New(o Options) (*Steerer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	var k kernel = o.Handle
	if o.Handle == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("steer: netlink handle: %w", err)
		}
		k = h
	}
	return newWith(o, k)
}

func newWith(o Options, h kernel) (*Steerer, error) {
	s := &Steerer{
		o: o, h: h, log: o.Logger.With("component", "steer"),
		tables: map[string]int{}, want: newEntries(), owner: map[any]string{},
		events: make(chan mobike.Event, 16), wake: make(chan struct{}, 1),
	}
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	if n := len(cur.rules) + len(cur.routes); n > 0 {
		s.log.Info("found routing state of a previous run; kept until the first desired state", "entries", n)
	}
	return s, nil
}

func (s *Steerer) ownsTable(t int) bool {
	return t == s.o.Table || (t >= s.o.UplinkTableBase && t < s.o.UplinkTableBase+s.o.UplinkTables)
}

func (s *Steerer) ownsPrio(p int) bool { return p >= s.o.MainPrio && p <= s.o.PrioMax }

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func defaultPrefix(is4 bool) netip.Prefix {
	if is4 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// entriesFor converts a desired state into kernel entries and the steering
// group owning each (uplink entries have none). Groups whose entries are
// invalid are left out and returned as failed.
func (s *Steerer) entriesFor(d mobike.Desired) (entries, map[any]string, map[string]error, error) {
	ups := slices.Clone(d.Uplinks)
	sort.Slice(ups, func(i, j int) bool { return ups[i].Name < ups[j].Name })
	// Sticky tables: keep existing assignments, free those of gone uplinks.
	keep := map[string]bool{}
	for _, u := range ups {
		keep[u.Name] = true
	}
	for n := range s.tables {
		if !keep[n] {
			delete(s.tables, n)
		}
	}
	used := map[int]bool{}
	for _, t := range s.tables {
		used[t] = true
	}
	e := newEntries()
	owner := map[any]string{}
	var uerrs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		e.rules[ruleKey{Prio: s.o.MainPrio, Fam: fam, Table: unix.RT_TABLE_MAIN, SuppressDefault: true}] = struct{}{}
	}
	for _, u := range ups {
		if u.LinkIdx <= 0 {
			uerrs = append(uerrs, fmt.Errorf("steer: uplink %q: no link index", u.Name))
			continue
		}
		t, ok := s.tables[u.Name]
		if !ok {
			for c := s.o.UplinkTableBase; c < s.o.UplinkTableBase+s.o.UplinkTables; c++ {
				if !used[c] {
					t, ok = c, true
					break
				}
			}
			if !ok {
				uerrs = append(uerrs, fmt.Errorf("steer: uplink %q: no free table", u.Name))
				continue
			}
			s.tables[u.Name], used[t] = t, true
		}
		fams := map[bool]netip.Addr{} // is4 -> gateway (zero: on-link)
		for _, l := range u.Local {
			l = l.Unmap()
			if !l.IsValid() {
				continue
			}
			e.rules[ruleKey{Prio: s.o.SourcePrio, Fam: family(l), Src: hostPrefix(l), Table: t}] = struct{}{}
			if _, ok := fams[l.Is4()]; !ok {
				fams[l.Is4()] = netip.Addr{}
			}
		}
		for _, g := range u.Gateways {
			g = g.Unmap()
			if _, ok := fams[g.Is4()]; ok {
				fams[g.Is4()] = g
			}
		}
		for is4, g := range fams {
			e.routes[routeKey{Table: t, Dst: defaultPrefix(is4)}] = routeVal{LinkIdx: u.LinkIdx, Gw: g}
		}
	}
	failed := map[string]error{}
	for _, g := range d.Groups {
		l, r, nh := g.Pair.Local.Unmap(), g.Pair.Remote.Unmap(), g.Nexthop.Unmap()
		switch {
		case !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4():
			failed[g.Name] = fmt.Errorf("steer: group %s: invalid pair %s", g.Name, g.Pair)
			continue
		case g.LinkIdx <= 0:
			failed[g.Name] = fmt.Errorf("steer: group %s: no link index", g.Name)
			continue
		case nh.IsValid() && nh.Is4() != r.Is4():
			failed[g.Name] = fmt.Errorf("steer: group %s: next hop %s of another family", g.Name, nh)
			continue
		}
		rk := routeKey{Table: s.o.Table, Dst: hostPrefix(r)}
		e.routes[rk] = routeVal{LinkIdx: g.LinkIdx, Gw: nh, Src: l}
		owner[rk] = g.Name
		pk := ruleKey{Prio: s.o.PeerPrio, Fam: family(r), Dst: hostPrefix(r), Table: s.o.Table}
		e.rules[pk] = struct{}{}
		owner[pk] = g.Name
		for _, p := range g.Prohibit {
			p = p.Unmap()
			if !p.IsValid() || p == r {
				continue
			}
			k := ruleKey{Prio: s.o.ProhibitPrio, Fam: family(p), Dst: hostPrefix(p), Prohibit: true}
			e.rules[k] = struct{}{}
			owner[k] = g.Name
		}
	}
	return e, owner, failed, errors.Join(uerrs...)
}

// Set makes the kernel equal to the desired state d and returns the steering
// groups whose entries could not be installed (sorted) and every error. An
// identical second call changes nothing in the kernel.
func (s *Steerer) Set(d mobike.Desired) (failed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, owner, bad, uerr := s.entriesFor(d)
	s.want, s.owner, s.set = e, owner, true
	errs := []error{uerr}
	for name, err := range bad {
		errs = append(errs, err)
		failed = append(failed, name)
	}
	keys, serr := s.syncLocked()
	errs = append(errs, serr)
	for _, k := range keys {
		if g, ok := owner[k]; ok && !slices.Contains(failed, g) {
			failed = append(failed, g)
		}
	}
	slices.Sort(failed)
	return failed, errors.Join(errs...)
}

// Reconcile re-reads the kernel and repairs it towards the last state set
// (nothing when none was set yet).
func (s *Steerer) Reconcile() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.set {
		return nil
	}
	_, err := s.syncLocked()
	return err
}

// Cleanup removes every entry it owns from the kernel (including leftovers
// of earlier runs) and forgets its state.
func (s *Steerer) Cleanup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.owner, s.set = newEntries(), map[any]string{}, true
	clear(s.tables)
	_, err := s.syncLocked()
	return err
}

// Dump renders the state of the last Set as sorted `ip`-like lines.
func (s *Steerer) Dump() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.want.lines()
}

// Kernel reads what the kernel holds of mobiked's and renders it like Dump
// (so that Kernel() equal to Dump() means the kernel is in the desired
// state).
func (s *Steerer) Kernel() ([]string, error) {
	ks, err := s.read()
	if err != nil {
		return nil, err
	}
	return ks.entries().lines(), nil
}

// ---- running off the core's goroutine ----

// Submit hands a routing state to Run; a state not applied yet is replaced
// (only the latest matters). It never blocks.
func (s *Steerer) Submit(a mobike.ActRouting) {
	s.smu.Lock()
	s.latest = &a
	s.smu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Events delivers one mobike.EvRoutingApplied per applied state (and per
// resync that failed). Closed when Run returns.
func (s *Steerer) Events() <-chan mobike.Event { return s.events }

// Run applies submitted states until ctx ends, re-applies the last one
// every Resync, and carries out RequestArmRoam.
func (s *Steerer) Run(ctx context.Context) error {
	defer close(s.events)
	tick := time.NewTicker(s.o.Resync)
	defer tick.Stop()
	var last *mobike.ActRouting
	for {
		resync := false
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-tick.C:
			resync = true
		}
		s.smu.Lock()
		a, arm := s.latest, s.arm
		s.latest, s.arm = nil, nil
		s.smu.Unlock()
		if arm != nil {
			// First: a routing state applied now would trigger charon
			// itself, and the arm is cheap (two netlink calls).
			if err := s.ArmRoam(arm.linkIdx, arm.local); err != nil {
				s.log.Warn("charon roam not armed", "err", err)
			}
		}
		if a == nil {
			if !resync || last == nil {
				continue
			}
			a = last
		}
		start := time.Now()
		failed, err := s.Set(a.State)
		last = a
		s.applied.Store(a.Gen)
		if err != nil {
			s.log.Error("routing state not fully applied", "gen", a.Gen, "failed_groups", failed, "err", err)
		} else if !resync {
			s.log.Debug("routing state applied", "gen", a.Gen, "took", time.Since(start))
		}
		if resync && err == nil {
			continue
		}
		select {
		case s.events <- mobike.EvRoutingApplied{Gen: a.Gen, Failed: failed, Err: err}:
		case <-ctx.Done():
			return nil
		}
	}
}

// AppliedGen returns the generation of the state Run applied last.
func (s *Steerer) AppliedGen() uint64 { return s.applied.Load() }

// ---- rendering ----

func (e entries) lines() []string {
	var out []string
	for k := range e.rules {
		out = append(out, k.String())
	}
	for k, v := range e.routes {
		out = append(out, routeString(k, v))
	}
	sort.Strings(out)
	return out
}

func (k ruleKey) String() string {
	from, to := "all", "all"
	if k.Src.IsValid() {
		from = k.Src.String()
	}
	if k.Dst.IsValid() {
		to = k.Dst.String()
	}
	act := fmt.Sprintf("lookup %d", k.Table)
	if k.Prohibit {
		act = "prohibit"
	}
	if k.SuppressDefault {
		act += " suppress_prefixlength 0"
	}
	fam := "ipv4"
	if k.Fam == unix.AF_INET6 {
		fam = "ipv6"
	}
	return fmt.Sprintf("rule %d %s: from %s to %s %s", k.Prio, fam, from, to, act)
}

func routeString(k routeKey, v routeVal) string {
	s := fmt.Sprintf("route table %d %s", k.Table, k.Dst)
	if v.Gw.IsValid() {
		s += " via " + v.Gw.String()
	}
	s += fmt.Sprintf(" dev %d", v.LinkIdx)
	if v.Src.IsValid() {
		s += " src " + v.Src.String()
	}
	return s
}

// ---- the kernel ----

// kernelState is what the kernel holds of ours, with the raw objects needed
// to delete them.
type kernelState struct {
	rules  map[ruleKey]netlink.Rule
	routes map[routeKey]netlink.Route
	vals   map[routeKey]routeVal
}

func (k kernelState) entries() entries {
	e := newEntries()
	for r := range k.rules {
		e.rules[r] = struct{}{}
	}
	for r, v := range k.vals {
		e.routes[r] = v
	}
	return e
}

func toPrefix(n *net.IPNet, family int) netip.Prefix {
	if n == nil || n.IP == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	if family == unix.AF_INET {
		a = a.Unmap()
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

func toAddr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if ip.To4() != nil {
		return a.Unmap()
	}
	return a
}

// read lists the kernel entries this steerer owns: rules in its priority
// band with its protocol, routes with its protocol in its tables.
func (s *Steerer) read() (kernelState, error) {
	ks := kernelState{rules: map[ruleKey]netlink.Rule{}, routes: map[routeKey]netlink.Route{}, vals: map[routeKey]routeVal{}}
	var rules []netlink.Rule
	var err error
	for try := 0; ; try++ {
		rules, err = s.h.RuleList(netlink.FAMILY_ALL)
		if err == nil || !errors.Is(err, netlink.ErrDumpInterrupted) || try == 3 {
			break
		}
	}
	if err != nil {
		return ks, fmt.Errorf("steer: list rules: %w", err)
	}
	for _, r := range rules {
		if !s.ownsPrio(r.Priority) || r.Protocol != s.o.Protocol {
			continue
		}
		k := ruleKey{Prio: r.Priority, Fam: r.Family, Src: toPrefix(r.Src, r.Family), Dst: toPrefix(r.Dst, r.Family)}
		// The rule dump does not report the action type: a rule of ours
		// without a table is a prohibit rule.
		if r.Table == 0 {
			k.Prohibit = true
		} else {
			k.Table = r.Table
		}
		odd := r.Mark != 0 || r.IifName != "" || r.OifName != "" || r.Invert || r.Goto >= 0 || r.SuppressIfgroup >= 0
		switch r.SuppressPrefixlen {
		case -1:
		case 0:
			k.SuppressDefault = true
		default:
			odd = true
		}
		if odd {
			// Ours but not of a shape we install: give it a key no wanted
			// entry has, so it gets removed.
			k.Prio = -r.Priority
		}
		ks.rules[k] = r
	}
	var routes []netlink.Route
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: netlink.RouteProtocol(s.o.Protocol)}
	for try := 0; ; try++ {
		routes, err = s.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err == nil || !errors.Is(err, netlink.ErrDumpInterrupted) || try == 3 {
			break
		}
	}
	if err != nil {
		return ks, fmt.Errorf("steer: list routes: %w", err)
	}
	for _, r := range routes {
		if !s.ownsTable(r.Table) {
			continue
		}
		dst := toPrefix(r.Dst, r.Family)
		if !dst.IsValid() {
			dst = defaultPrefix(r.Family != unix.AF_INET6)
		}
		k := routeKey{Table: r.Table, Dst: dst}
		ks.routes[k] = r
		ks.vals[k] = routeVal{LinkIdx: r.LinkIndex, Gw: toAddr(r.Gw), Src: toAddr(r.Src)}
	}
	return ks, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (s *Steerer) nlRule(k ruleKey) *netlink.Rule {
	r := netlink.NewRule()
	r.Priority = k.Prio
	r.Protocol = s.o.Protocol
	r.Family = k.Fam
	if k.Src.IsValid() {
		r.Src = ipNet(k.Src)
	}
	if k.Dst.IsValid() {
		r.Dst = ipNet(k.Dst)
	}
	if k.Prohibit {
		r.Type = unix.FR_ACT_PROHIBIT
	} else {
		r.Table = k.Table
	}
	if k.SuppressDefault {
		r.SuppressPrefixlen = 0
	}
	return r
}

func (s *Steerer) nlRoute(k routeKey, v routeVal) *netlink.Route {
	r := &netlink.Route{
		Table:     k.Table,
		Dst:       ipNet(k.Dst),
		LinkIndex: v.LinkIdx,
		Protocol:  netlink.RouteProtocol(s.o.Protocol),
		Family:    family(k.Dst.Addr()),
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if v.Gw.IsValid() {
		r.Gw = net.IP(v.Gw.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if v.Src.IsValid() {
		r.Src = net.IP(v.Src.AsSlice())
	}
	return r
}

// op counts one kernel change (for the FaultAfterOps test hook).
func (s *Steerer) op() {
	s.ops++
	if s.o.FaultAfterOps > 0 && s.ops == s.o.FaultAfterOps && s.o.Fault != nil {
		s.log.Warn("test hook: fault after kernel change", "ops", s.ops)
		s.o.Fault()
	}
}

// syncLocked makes the kernel match s.want: first every missing or changed
// route is installed, then the rules that point to them; prohibit rules
// not wanted any more are removed before new ones are added; then the
// remaining unwanted rules and routes are removed. It keeps going after errors and
// returns them joined, with the keys of the wanted entries that failed.
func (s *Steerer) syncLocked() ([]any, error) {
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	want := s.want
	var errs []error
	var failed []any
	for _, k := range sortedRouteKeys(want.routes) {
		v := want.routes[k]
		old, ours := cur.vals[k]
		if ours && old == v {
			continue
		}
		// Replace only our own route (atomic move of a host route); a new
		// one is added, so that a foreign route with the same destination
		// in our table is reported (EEXIST) instead of overwritten.
		op, do := "add", s.h.RouteAdd
		if ours {
			op, do = "replace", s.h.RouteReplace
		}
		err := do(s.nlRoute(k, v))
		s.op()
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s %s: %w", op, routeString(k, v), err))
			failed = append(failed, k)
		}
	}
	// Rules: the others (source, peer) first, then the prohibits, lifting
	// before laying, so that a remote move never takes away both addresses
	// of a peer, not even for the length of one Set or after a crash in
	// its middle: the new address is allowed before the old one is
	// prohibited. A group whose new path could not be put in place (a
	// route, a rule or a lift failed) gets no new prohibit in this Set:
	// its old address stays allowed, and the group is reported failed.
	blocked := map[string]bool{}
	addRules := func(prohibit bool) {
		for _, k := range sortedRuleKeys(want.rules) {
			if k.Prohibit != prohibit {
				continue
			}
			if _, ok := cur.rules[k]; ok {
				continue
			}
			if g, ok := s.owner[k]; ok && prohibit && blocked[g] {
				errs = append(errs, fmt.Errorf("rule add %s: not laid, group %s's new path is not in place", k, g))
				failed = append(failed, k)
				continue
			}
			err := s.h.RuleAdd(s.nlRule(k))
			s.op()
			if err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("rule add %s: %w", k, err))
				failed = append(failed, k)
			}
		}
	}
	delRules := func(prohibit bool) {
		for _, k := range sortedRuleKeys(cur.rules) {
			if k.Prohibit != prohibit {
				continue
			}
			if _, ok := want.rules[k]; ok {
				continue
			}
			r := cur.rules[k]
			del := &r
			if k.Prio > 0 {
				del = s.nlRule(k) // carries the action type the dump lacks
			}
			err := s.h.RuleDel(del)
			s.op()
			if err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("rule del %s: %w", k, err))
				// A prohibit still in place on an address a group now
				// uses blocks that group.
				if g, ok := s.owner[routeKey{Table: s.o.Table, Dst: k.Dst}]; ok && prohibit {
					blocked[g] = true
				}
			}
		}
	}
	addRules(false)
	delRules(true)
	for _, k := range failed {
		if g, ok := s.owner[k]; ok {
			blocked[g] = true
		}
	}
	addRules(true)
	delRules(false)
	for _, k := range sortedRouteKeys(cur.routes) {
		if _, ok := want.routes[k]; ok {
			continue
		}
		r := cur.routes[k]
		err := s.h.RouteDel(&r)
		s.op()
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("route del %s: %w", routeString(k, cur.vals[k]), err))
		}
	}
	return failed, errors.Join(errs...)
}

func sortedRuleKeys[V any](m map[ruleKey]V) []ruleKey {
	ks := make([]ruleKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].String() < ks[j].String() })
	return ks
}

func sortedRouteKeys[V any](m map[routeKey]V) []routeKey {
	ks := make([]routeKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].Table != ks[j].Table {
			return ks[i].Table < ks[j].Table
		}
		return ks[i].Dst.String() < ks[j].Dst.String()
	})
	return ks
}
