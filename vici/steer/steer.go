// Package steer is mobiked's steering actuator: it owns one routing table, a
// table per uplink and a band of rule priorities after charon's rule 220, and
// installs the kernel state that makes charon (prefer_best_path = yes, kernel
// lookup mode, process_rules = yes) move an IKE_SA to a chosen address pair.
//
// Layout (defaults):
//
//	pref 1000 from LOCAL lookup UPLINK_TABLE      per local address (source rules)
//	pref 1040 to R' prohibit                      peer addresses taken away from charon
//	pref 1050 to R lookup 2100                    peer rules
//	table 2100: R via NEXTHOP dev UPLINK src L    host routes (one per steered peer address)
//	table 2101+: default via GW dev UPLINK        per uplink
//
// Everything it installs carries protocol 77 (routes and rules); it only ever
// reads, changes or deletes entries with that protocol in its tables and
// priority band. New entries are added before old ones are removed.
package steer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// Defaults of Options.
const (
	DefaultTable           = 2100
	DefaultUplinkTableBase = 2101
	DefaultUplinkTables    = 64
	DefaultSourcePrio      = 1000 // source rules 1000–1039
	DefaultProhibitPrio    = 1040 // prohibit rules 1040–1049
	DefaultPeerPrio        = 1050 // peer rules 1050–1099
	DefaultPrioMax         = 1099
	// DefaultProtocol marks mobiked's routes and rules ('M').
	DefaultProtocol = 77
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
	SourcePrio      int
	ProhibitPrio    int
	PeerPrio        int
	PrioMax         int // last priority of the band (all three kinds)
	Protocol        uint8
}

// Uplink is a link mobiked may send through.
type Uplink struct {
	Name     string
	LinkIdx  int
	Local    []netip.Addr // its addresses: each gets a source rule
	Gateways []netip.Addr // next hops, at most one per family; a family with a local address but no gateway gets an on-link default route
}

type ruleKey struct {
	Prio     int
	Src, Dst netip.Prefix
	Table    int // 0 for prohibit
	Prohibit bool
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !(o.SourcePrio <= o.ProhibitPrio && o.ProhibitPrio <= o.PeerPrio && o.PeerPrio <= o.PrioMax) {
		return o, errors.New("steer: priorities must be source <= prohibit <= peer <= max")
	}
	if o.SourcePrio <= 220 {
		return o, fmt.Errorf("steer: source priority %d must come after charon's rule 220", o.SourcePrio)
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
	o   Options
	h   kernel
	log *slog.Logger

	// mu guards the fields below.
	mu       sync.Mutex
	uplinks  entries
	tables   map[string]int     // uplink name -> table, sticky
	peers    map[string]entries // steering group -> its entries
	adopted  entries            // found in the kernel at start, not yet re-decided
	upSet    bool
	lastPair map[string]mobike.Pair
	// synced is the wanted state of the last sync that succeeded in full
	// (nil: none, or the kernel may differ); Apply skips the kernel when a
	// group only asks for entries it already has.
	synced *entries
}

// New creates a Steerer and adopts the entries it owns that are already in
// the kernel (left by a previous run), so that a restart moves nothing until
// the core decides again.
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
		uplinks: newEntries(), tables: map[string]int{}, peers: map[string]entries{},
		lastPair: map[string]mobike.Pair{},
	}
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	s.adopted = cur.entries()
	return s, nil
}

func (s *Steerer) ownsTable(t int) bool {
	return t == s.o.Table || (t >= s.o.UplinkTableBase && t < s.o.UplinkTableBase+s.o.UplinkTables)
}

func (s *Steerer) ownsPrio(p int) bool { return p >= s.o.SourcePrio && p <= s.o.PrioMax }

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func defaultPrefix(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// SetUplinks replaces the per-uplink tables and source rules.
func (s *Steerer) SetUplinks(ups []Uplink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ups = slices.Clone(ups)
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
	for _, u := range ups {
		if u.LinkIdx <= 0 {
			return fmt.Errorf("steer: uplink %q: no link index", u.Name)
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
				return fmt.Errorf("steer: uplink %q: no free table", u.Name)
			}
			s.tables[u.Name], used[t] = t, true
		}
		fams := map[bool]netip.Addr{} // is4 -> gateway (zero: on-link)
		for _, l := range u.Local {
			l = l.Unmap()
			if !l.IsValid() {
				return fmt.Errorf("steer: uplink %q: invalid local address", u.Name)
			}
			e.rules[ruleKey{Prio: s.o.SourcePrio, Src: hostPrefix(l), Table: t}] = struct{}{}
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
			dst := defaultPrefix(netip.IPv6Unspecified())
			if is4 {
				dst = defaultPrefix(netip.IPv4Unspecified())
			}
			e.routes[routeKey{Table: t, Dst: dst}] = routeVal{LinkIdx: u.LinkIdx, Gw: g}
		}
	}
	s.uplinks, s.upSet = e, true
	// The uplink layout is decided now: drop adopted uplink entries.
	for k := range s.adopted.rules {
		if k.Prio < s.o.ProhibitPrio {
			delete(s.adopted.rules, k)
		}
	}
	for k := range s.adopted.routes {
		if k.Table != s.o.Table {
			delete(s.adopted.routes, k)
		}
	}
	return s.syncLocked()
}

// Apply puts the steering group a.Peer on a.Pair: host route and peer rule
// for the remote address, prohibit rules for a.Prohibit (the peer's other
// addresses). Entries of the group's previous steer that are no longer wanted
// are removed after the new ones are in place.
func (s *Steerer) Apply(a mobike.ActSteer) error {
	l, r := a.Pair.Local.Unmap(), a.Pair.Remote.Unmap()
	if !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4() {
		return fmt.Errorf("steer: apply %s: invalid pair", a.Pair)
	}
	if a.LinkIdx <= 0 {
		return fmt.Errorf("steer: apply %s: no link index", a.Pair)
	}
	nh := a.Nexthop.Unmap()
	if nh.IsValid() && nh.Is4() != r.Is4() {
		return fmt.Errorf("steer: apply %s: next hop %s of another family", a.Pair, nh)
	}
	e := newEntries()
	e.routes[routeKey{Table: s.o.Table, Dst: hostPrefix(r)}] = routeVal{LinkIdx: a.LinkIdx, Gw: nh, Src: l}
	e.rules[ruleKey{Prio: s.o.PeerPrio, Dst: hostPrefix(r), Table: s.o.Table}] = struct{}{}
	touched := map[netip.Addr]bool{r: true}
	for _, p := range a.Prohibit {
		p = p.Unmap()
		if !p.IsValid() || p == r {
			continue
		}
		e.rules[ruleKey{Prio: s.o.ProhibitPrio, Dst: hostPrefix(p), Prohibit: true}] = struct{}{}
		touched[p] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inSyncLocked(a.Peer, e, touched) {
		// Nothing to change in the kernel: many steering groups towards one
		// gateway steer onto the same pair (1 000 SAs → 1 000 identical
		// requests), and each sync costs a full dump of rules and routes.
		s.peers[a.Peer] = e
		s.lastPair[a.Peer] = mobike.Pair{Local: l, Remote: r}
		s.log.Debug("steered (already in place)", "peer", a.Peer, "path", a.Pair.String())
		return nil
	}
	s.peers[a.Peer] = e
	s.lastPair[a.Peer] = mobike.Pair{Local: l, Remote: r}
	// Adopted entries about these addresses are superseded.
	for k := range s.adopted.rules {
		if k.Dst.IsValid() && touched[k.Dst.Addr()] {
			delete(s.adopted.rules, k)
		}
	}
	for k := range s.adopted.routes {
		if k.Table == s.o.Table && touched[k.Dst.Addr()] {
			delete(s.adopted.routes, k)
		}
	}
	if err := s.syncLocked(); err != nil {
		return fmt.Errorf("steer: apply %s for %q: %w", a.Pair, a.Peer, err)
	}
	s.log.Info("steered", "peer", a.Peer, "path", a.Pair.String(), "uplink", a.Uplink, "reason", a.Reason)
	return nil
}

// Release removes a steering group's entries (its SAs are gone).
func (s *Steerer) Release(peer string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.peers[peer]; !ok {
		return nil
	}
	delete(s.peers, peer)
	delete(s.lastPair, peer)
	return s.syncLocked()
}

// Reconcile re-reads the kernel and repairs it towards the wanted state:
// missing entries are added, changed ones replaced, foreign-changed or stale
// owned ones removed. Entries not owned are never touched.
func (s *Steerer) Reconcile() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncLocked()
}

// Cleanup removes every entry it owns from the kernel (including leftovers
// of earlier runs) and forgets its state.
func (s *Steerer) Cleanup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uplinks, s.adopted, s.upSet = newEntries(), newEntries(), false
	s.peers, s.lastPair = map[string]entries{}, map[string]mobike.Pair{}
	return s.syncLocked()
}

// Dump renders the wanted state as sorted `ip`-like lines (for tests and
// the debug API).
func (s *Steerer) Dump() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wantLocked().lines()
}

func (s *Steerer) wantLocked() entries {
	w := newEntries()
	merge := func(e entries) {
		for k := range e.rules {
			w.rules[k] = struct{}{}
		}
		for k, v := range e.routes {
			w.routes[k] = v
		}
	}
	merge(s.adopted)
	merge(s.uplinks)
	names := make([]string, 0, len(s.peers))
	for n := range s.peers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		merge(s.peers[n])
	}
	return w
}

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
	return fmt.Sprintf("rule %d: from %s to %s %s", k.Prio, from, to, act)
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
		k := ruleKey{Prio: r.Priority, Src: toPrefix(r.Src, r.Family), Dst: toPrefix(r.Dst, r.Family)}
		// The rule dump does not report the action type: a rule of ours
		// without a table is a prohibit rule.
		if r.Table == 0 {
			k.Prohibit = true
		} else {
			k.Table = r.Table
		}
		if r.Mark != 0 || r.IifName != "" || r.OifName != "" || r.Invert || r.Goto >= 0 {
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
			if r.Family == unix.AF_INET6 {
				dst = defaultPrefix(netip.IPv6Unspecified())
			} else {
				dst = defaultPrefix(netip.IPv4Unspecified())
			}
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
	if k.Src.IsValid() {
		r.Src = ipNet(k.Src)
		r.Family = family(k.Src.Addr())
	}
	if k.Dst.IsValid() {
		r.Dst = ipNet(k.Dst)
		r.Family = family(k.Dst.Addr())
	}
	if k.Prohibit {
		r.Type = unix.FR_ACT_PROHIBIT
	} else {
		r.Table = k.Table
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

// syncLocked makes the kernel match the wanted state: first every missing or
// changed route and rule is installed (routes before the rules that point to
// them), then unwanted rules and routes are removed. It keeps going after
// errors and returns them joined.
func (s *Steerer) syncLocked() error {
	cur, err := s.read()
	if err != nil {
		return err
	}
	want := s.wantLocked()
	var errs []error
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
		if err := do(s.nlRoute(k, v)); err != nil {
			errs = append(errs, fmt.Errorf("route %s %s: %w", op, routeString(k, v), err))
		}
	}
	for _, k := range sortedRuleKeys(want.rules) {
		if _, ok := cur.rules[k]; ok {
			continue
		}
		if err := s.h.RuleAdd(s.nlRule(k)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("rule add %s: %w", k, err))
		}
	}
	for _, k := range sortedRuleKeys(cur.rules) {
		if _, ok := want.rules[k]; ok {
			continue
		}
		r := cur.rules[k]
		del := &r
		if k.Prio > 0 {
			del = s.nlRule(k) // carries the action type the dump lacks
		}
		if err := s.h.RuleDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("rule del %s: %w", k, err))
		}
	}
	for _, k := range sortedRouteKeys(cur.routes) {
		if _, ok := want.routes[k]; ok {
			continue
		}
		r := cur.routes[k]
		if err := s.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("route del %s: %w", routeString(k, cur.vals[k]), err))
		}
	}
	if len(errs) == 0 {
		s.synced = &want
	} else {
		s.synced = nil
	}
	return errors.Join(errs...)
}

// inSyncLocked reports whether giving group peer the entries e changes
// nothing in the kernel: the group had no entries or the same ones, every
// entry is already in the last fully synced state, and no adopted entry
// about a touched address would have to go.
func (s *Steerer) inSyncLocked(peer string, e entries, touched map[netip.Addr]bool) bool {
	if s.synced == nil {
		return false
	}
	if prev, ok := s.peers[peer]; ok && !sameEntries(prev, e) {
		return false
	}
	for k := range e.rules {
		if _, ok := s.synced.rules[k]; !ok {
			return false
		}
	}
	for k, v := range e.routes {
		if w, ok := s.synced.routes[k]; !ok || w != v {
			return false
		}
	}
	for k := range s.adopted.rules {
		if k.Dst.IsValid() && touched[k.Dst.Addr()] {
			return false
		}
	}
	for k := range s.adopted.routes {
		if k.Table == s.o.Table && touched[k.Dst.Addr()] {
			return false
		}
	}
	return true
}

func sameEntries(a, b entries) bool {
	if len(a.rules) != len(b.rules) || len(a.routes) != len(b.routes) {
		return false
	}
	for k := range a.rules {
		if _, ok := b.rules[k]; !ok {
			return false
		}
	}
	for k, v := range a.routes {
		if w, ok := b.routes[k]; !ok || w != v {
			return false
		}
	}
	return true
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
