// Package metrics exports mobiked's state and events to Prometheus.
//
// State (paths, SAs, charon's VICI connection) is read at scrape time from a
// Source and emitted as const metrics; events (steers, failovers, probes,
// netlink messages) are counted inline by the Observe* methods. Everything is
// registered on a Registerer the caller passes in; nothing touches the
// default registry.
//
// Names follow mobike_<subsystem>_<name>_<unit>, counters end in _total, and
// label values come from closed sets: uplink names (the host's links),
// connection names (charon's config), address family, path state, steer
// reason. Addresses, ports, SPIs and SA unique IDs are never labels; a pair is
// labelled by (uplink, conn, peer index, family), where the daemon exports
// the pairs of a steering group once, under its first connection.
//
// Cardinality, for a gateway with U uplinks, C connections in G steering
// groups, P peer addresses per group (both families counted in P) and any
// number of SAs:
//
//   - path series: G·P·U pairs × (up, rtt, loss + len(PathStates) state-set
//     series) = G·P·U·8. A branch box with 3 uplinks, 2 connections and 2
//     peer addresses each: 12 pairs, 96 series.
//   - SA series: one per (conn, uplink) pair in use, not per SA:
//     10 000 SAs of 50 connections over 3 uplinks are at most 150 series of
//     mobike_sa_uplink_info (and of mobike_sas). Per-connection preference: 2·C series.
//   - probe counters: 3·U; steer, failure and alert counters: one series
//     per cause (closed enums of the core); the failover histogram:
//     len(buckets)+2 = 12.
//
// A responder with 10 000 SAs from 10 000 peers under one connection name is
// still one mobike_sa_uplink_info series per uplink; it does not probe peers,
// so it has no path series.
package metrics

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mobiked/mobiked/mobike"
)

const namespace = "mobike"

// PathStates is the closed set of path states exported by the
// mobike_path_state state-set. A state outside it is exported as "unknown".
var PathStates = []string{"unknown", "testing", "operational", "degraded", "down"}

// upStates are the PathStates in which mobike_path_up is 1.
var upStates = []string{"operational", "degraded"}

// Families is the closed set of the family label.
var Families = []string{"ipv4", "ipv6"}

// SteerReasons is the closed set of reasons of mobike_steer_total: the
// core's steer causes (mobike.SteerCause), every one of which the core can
// produce (TestEveryCauseOccurs in mobike/sim).
func SteerReasons() []string { return names(mobike.SteerCauses()) }

// FailureReasons is the closed set of reasons of mobike_steer_failures_total
// (mobike.FailCause).
func FailureReasons() []string { return names(mobike.FailCauses()) }

// AlertReasons is the closed set of reasons of mobike_alerts_total
// (mobike.AlertReason).
func AlertReasons() []string { return names(mobike.AlertReasons()) }

func names[T fmt.Stringer](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	return out
}

// FailoverBuckets are the buckets of mobike_failover_duration_seconds: from
// charon-speed moves (~0.1 s) to DPD-speed ones (tens of seconds).
var FailoverBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30}

// Path is one local×remote pair as seen at scrape time.
type Path struct {
	Uplink string  // the local address's uplink (link name)
	Conn   string  // the steering group the peer belongs to (its first connection)
	Peer   int     // index of the remote address in the group's peer set
	Family string  // "ipv4" or "ipv6"
	State  string  // one of PathStates
	RTT    float64 // smoothed RTT in seconds; NaN when unknown
	Loss   float64 // loss ratio 0..1 over the prober's window
}

// SA is one IKE_SA as seen at scrape time.
type SA struct {
	Conn   string
	Uplink string // the uplink of the SA's local address; "" when none matches
}

// Conn is a steered connection's preference at scrape time.
type Conn struct {
	Name      string
	Preferred string // the uplink of the best-ranked pair; "" when none is usable
	Current   string // the uplink its SAs are on; "" when none
}

// Snapshot is the state the scrape-time collector exports. The Source owns
// it; the collector only reads it.
type Snapshot struct {
	VICIUp bool
	Paths  []Path
	SAs    []SA
	Conns  []Conn
}

// Source provides snapshots; it is called once per scrape and must be safe
// for concurrent use.
type Source interface {
	MetricsSnapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

func (f SourceFunc) MetricsSnapshot() Snapshot { return f() }

// BuildInfo labels mobike_build_info.
type BuildInfo struct {
	Version   string
	Revision  string
	GoVersion string // default runtime.Version()
}

// Options configure New. Zero fields take the documented defaults.
type Options struct {
	Build BuildInfo
	// RoamArms reads how many times charon's roam evaluation was armed
	// (vici/steer Steerer.Arms); nil exports 0.
	RoamArms func() uint64
}

// Metrics holds mobiked's collectors.
type Metrics struct {
	steers         *prometheus.CounterVec
	steerFailures  *prometheus.CounterVec
	alerts         *prometheus.CounterVec
	failover       prometheus.Histogram
	netlinkEvents  prometheus.Counter
	roamArms       prometheus.CounterFunc
	probeSent      *prometheus.CounterVec
	probeLost      *prometheus.CounterVec
	probeBytes     *prometheus.CounterVec
	stateCollector *stateCollector
}

// Metric describes one exported metric family, for documentation and tests.
type Metric struct {
	Name   string
	Type   string // counter, gauge, histogram
	Labels []string
	Help   string
}

// Catalog lists every metric family New registers, sorted by name.
func Catalog() []Metric {
	out := []Metric{
		{"mobike_build_info", "gauge", []string{"version", "revision", "goversion"}, "Build information of mobiked; the value is always 1."},
		{"mobike_vici_up", "gauge", nil, "Whether mobiked is connected to charon's VICI socket (1) or not (0)."},
		{"mobike_path_up", "gauge", []string{"uplink", "conn", "peer", "family"}, "Whether a path (local×remote pair) is usable: operational or degraded (1), else 0."},
		{"mobike_path_state", "gauge", []string{"uplink", "conn", "peer", "family", "state"}, "State of a path as a state set: 1 for the current state, 0 for the others."},
		{"mobike_path_rtt_seconds", "gauge", []string{"uplink", "conn", "peer", "family"}, "Smoothed round-trip time of a path measured by its probes."},
		{"mobike_path_loss_ratio", "gauge", []string{"uplink", "conn", "peer", "family"}, "Probe loss ratio of a path over the prober's window (0..1)."},
		{"mobike_probe_sent_total", "counter", []string{"uplink"}, "Path probes sent, per uplink."},
		{"mobike_probe_lost_total", "counter", []string{"uplink"}, "Path probes that got no valid reply in time, per uplink."},
		{"mobike_probe_bytes_total", "counter", []string{"uplink"}, "Bytes of path probes sent, per uplink (IP payload)."},
		{"mobike_sa_uplink_info", "gauge", []string{"conn", "uplink"}, "Which uplinks carry IKE_SAs of a connection (uplink \"none\" when an SA's local address is on no uplink); the value is always 1."},
		{"mobike_sas", "gauge", []string{"conn", "uplink"}, "Number of IKE_SAs of a connection whose local address is on an uplink (uplink \"none\" when no uplink matches)."},
		{"mobike_conn_preferred_uplink_info", "gauge", []string{"conn", "uplink"}, "The uplink of a steered connection's best-ranked pair; the value is always 1."},
		{"mobike_conn_on_preferred_uplink", "gauge", []string{"conn"}, "Whether a steered connection's SAs are on its preferred uplink (1) or not (0)."},
		{"mobike_steer_total", "counter", []string{"reason"}, "Steers (moves of a connection to another pair) started, by reason."},
		{"mobike_steer_failures_total", "counter", []string{"reason"}, "Steers that failed or were abandoned, by reason (e.g. no ike-update confirmation in time)."},
		{"mobike_alerts_total", "counter", []string{"reason"}, "Alerts raised for operators, by reason (e.g. policy-conflict: connections sharing a gateway address have incompatible policies)."},
		{"mobike_failover_duration_seconds", "histogram", nil, "Time from detecting that a connection's path is down to charon confirming the move (ike-update)."},
		{"mobike_netlink_events_total", "counter", nil, "Netlink link, address and route messages received."},
		{"mobike_charon_roam_arms_total", "counter", nil, "Times charon's roam evaluation was armed while the pair a connection is on failed its confirmation burst (a route added and removed at once in mobiked's table, routing nothing), so that charon carries out the move as soon as it is decided instead of 100 ms later."},
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// catalogHelp returns the help of a catalog entry; it panics on a typo,
// which the tests catch.
func catalogHelp(name string) string {
	for _, m := range Catalog() {
		if m.Name == name {
			return m.Help
		}
	}
	panic("metrics: no catalog entry " + name)
}

// New creates the collectors and registers them on reg. src is read at
// every scrape.
func New(reg prometheus.Registerer, src Source, opts Options) (*Metrics, error) {
	if opts.Build.GoVersion == "" {
		opts.Build.GoVersion = runtime.Version()
	}
	m := &Metrics{}
	m.steers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_steer_total", Help: catalogHelp("mobike_steer_total"),
	}, []string{"reason"})
	m.steerFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_steer_failures_total", Help: catalogHelp("mobike_steer_failures_total"),
	}, []string{"reason"})
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_alerts_total", Help: catalogHelp("mobike_alerts_total"),
	}, []string{"reason"})
	m.failover = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mobike_failover_duration_seconds", Help: catalogHelp("mobike_failover_duration_seconds"),
		Buckets: FailoverBuckets,
	})
	m.netlinkEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mobike_netlink_events_total", Help: catalogHelp("mobike_netlink_events_total"),
	})
	arms := opts.RoamArms
	if arms == nil {
		arms = func() uint64 { return 0 }
	}
	m.roamArms = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mobike_charon_roam_arms_total", Help: catalogHelp("mobike_charon_roam_arms_total"),
	}, func() float64 { return float64(arms()) })
	m.probeSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_probe_sent_total", Help: catalogHelp("mobike_probe_sent_total"),
	}, []string{"uplink"})
	m.probeLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_probe_lost_total", Help: catalogHelp("mobike_probe_lost_total"),
	}, []string{"uplink"})
	m.probeBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mobike_probe_bytes_total", Help: catalogHelp("mobike_probe_bytes_total"),
	}, []string{"uplink"})
	// Every reason is exported at 0 from the start, so that rate() and
	// alerts see the series before the first event.
	for _, r := range SteerReasons() {
		m.steers.WithLabelValues(r)
	}
	for _, r := range FailureReasons() {
		m.steerFailures.WithLabelValues(r)
	}
	for _, r := range AlertReasons() {
		m.alerts.WithLabelValues(r)
	}
	m.stateCollector = newStateCollector(src, opts.Build)

	for _, c := range []prometheus.Collector{
		m.steers, m.steerFailures, m.alerts, m.failover, m.netlinkEvents, m.roamArms,
		m.probeSent, m.probeLost, m.probeBytes, m.stateCollector,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// ObserveSteer counts a steer started for cause c.
func (m *Metrics) ObserveSteer(c mobike.SteerCause) {
	m.steers.WithLabelValues(c.String()).Inc()
}

// ObserveSteerFailure counts a failed or abandoned steer.
func (m *Metrics) ObserveSteerFailure(c mobike.FailCause) {
	m.steerFailures.WithLabelValues(c.String()).Inc()
}

// ObserveAlert counts an alert.
func (m *Metrics) ObserveAlert(r mobike.AlertReason) {
	m.alerts.WithLabelValues(r.String()).Inc()
}

// ObserveFailover records the time from detecting a dead path to charon's
// confirming ike-update.
func (m *Metrics) ObserveFailover(d time.Duration) {
	m.failover.Observe(d.Seconds())
}

// ObserveNetlinkEvent counts one netlink message.
func (m *Metrics) ObserveNetlinkEvent() {
	m.netlinkEvents.Inc()
}

// ObserveProbe counts one probe of bytes bytes sent on uplink, lost or not.
// Call it once per probe, when its outcome is known.
func (m *Metrics) ObserveProbe(uplink string, bytes int, lost bool) {
	m.probeSent.WithLabelValues(uplink).Inc()
	m.probeBytes.WithLabelValues(uplink).Add(float64(max(bytes, 0)))
	if lost {
		m.probeLost.WithLabelValues(uplink).Inc()
	} else {
		// Keep the lost series present (at 0) for every probed uplink, so
		// that lost/sent ratios exist before the first loss.
		m.probeLost.WithLabelValues(uplink)
	}
}

// ForgetUplink drops the probe counters of an uplink that disappeared
// (e.g. an unplugged USB modem), bounding series to the links present.
func (m *Metrics) ForgetUplink(uplink string) {
	m.probeSent.DeleteLabelValues(uplink)
	m.probeLost.DeleteLabelValues(uplink)
	m.probeBytes.DeleteLabelValues(uplink)
}

// stateCollector emits the Source's snapshot as const metrics.
type stateCollector struct {
	src   Source
	build BuildInfo

	buildInfo, viciUp                             *prometheus.Desc
	pathUp, pathState, pathRTT, pathLoss          *prometheus.Desc
	saUplink, sas, connPreferred, connOnPreferred *prometheus.Desc

	mu sync.Mutex // serialises scrapes: Source snapshots can be costly
}

func newStateCollector(src Source, b BuildInfo) *stateCollector {
	desc := func(name string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, catalogHelp(name), labels, nil)
	}
	pair := []string{"uplink", "conn", "peer", "family"}
	return &stateCollector{
		src:             src,
		build:           b,
		buildInfo:       desc("mobike_build_info", "version", "revision", "goversion"),
		viciUp:          desc("mobike_vici_up"),
		pathUp:          desc("mobike_path_up", pair...),
		pathState:       desc("mobike_path_state", append(slices.Clone(pair), "state")...),
		pathRTT:         desc("mobike_path_rtt_seconds", pair...),
		pathLoss:        desc("mobike_path_loss_ratio", pair...),
		saUplink:        desc("mobike_sa_uplink_info", "conn", "uplink"),
		sas:             desc("mobike_sas", "conn", "uplink"),
		connPreferred:   desc("mobike_conn_preferred_uplink_info", "conn", "uplink"),
		connOnPreferred: desc("mobike_conn_on_preferred_uplink", "conn"),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.buildInfo, c.viciUp, c.pathUp, c.pathState, c.pathRTT, c.pathLoss,
		c.saUplink, c.sas, c.connPreferred, c.connOnPreferred,
	} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := prometheus.GaugeValue
	ch <- prometheus.MustNewConstMetric(c.buildInfo, gauge, 1, c.build.Version, c.build.Revision, c.build.GoVersion)

	s := c.src.MetricsSnapshot()
	ch <- prometheus.MustNewConstMetric(c.viciUp, gauge, b2f(s.VICIUp))

	// Duplicate label sets would make the whole scrape fail; keep the first.
	seen := map[[4]string]bool{}
	for _, p := range s.Paths {
		lv := [4]string{p.Uplink, p.Conn, strconv.Itoa(p.Peer), p.Family}
		if seen[lv] {
			continue
		}
		seen[lv] = true
		state := p.State
		if !slices.Contains(PathStates, state) {
			state = "unknown"
		}
		ch <- prometheus.MustNewConstMetric(c.pathUp, gauge, b2f(slices.Contains(upStates, state)), lv[:]...)
		for _, st := range PathStates {
			ch <- prometheus.MustNewConstMetric(c.pathState, gauge, b2f(st == state), append(lv[:], st)...)
		}
		if !math.IsNaN(p.RTT) {
			ch <- prometheus.MustNewConstMetric(c.pathRTT, gauge, p.RTT, lv[:]...)
		}
		ch <- prometheus.MustNewConstMetric(c.pathLoss, gauge, p.Loss, lv[:]...)
	}

	type connUplink struct{ conn, uplink string }
	counts := map[connUplink]int{}
	for _, sa := range s.SAs {
		u := sa.Uplink
		if u == "" {
			u = "none"
		}
		counts[connUplink{sa.Conn, u}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.saUplink, gauge, 1, k.conn, k.uplink)
		ch <- prometheus.MustNewConstMetric(c.sas, gauge, float64(n), k.conn, k.uplink)
	}

	seenConn := map[string]bool{}
	for _, cn := range s.Conns {
		if seenConn[cn.Name] {
			continue
		}
		seenConn[cn.Name] = true
		if cn.Preferred != "" {
			ch <- prometheus.MustNewConstMetric(c.connPreferred, gauge, 1, cn.Name, cn.Preferred)
		}
		ch <- prometheus.MustNewConstMetric(c.connOnPreferred, gauge, b2f(cn.Preferred != "" && cn.Current == cn.Preferred), cn.Name)
	}
}
