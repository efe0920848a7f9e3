package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/mobiked/mobiked/cmd/internal/buildinfo"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor/metrics"
	"github.com/mobiked/mobiked/monitor/probe"
)

// daemonMetrics derives counters from the core's trace; state metrics are
// read at scrape time from a snapshot the loop publishes.
type daemonMetrics struct {
	viciUp atomic.Bool
	m      *metrics.Metrics
	reg    *prometheus.Registry

	mu   sync.Mutex // guards snap
	snap metrics.Snapshot

	probes      *probeAccount // loop
	netlinkSeen uint64        // loop: monitor reads already counted
}

func newDaemonMetrics() *daemonMetrics {
	return &daemonMetrics{probes: newProbeAccount()}
}

func (dm *daemonMetrics) setViciUp(up bool) { dm.viciUp.Store(up) }

// observeAlert counts an alert (loop goroutine).
func (dm *daemonMetrics) observeAlert(r mobike.AlertReason) {
	if dm.m != nil {
		dm.m.ObserveAlert(r)
	}
}

// observe turns one trace observation into counter updates (loop goroutine).
func (dm *daemonMetrics) observe(now time.Time, o mobike.Observation, d *daemon) {
	if dm.m == nil {
		return
	}
	switch o := o.(type) {
	case mobike.SteerRequested:
		dm.m.ObserveSteer(o.Cause)
		if o.Forced {
			if _, ok := d.forcedAt[o.Group]; !ok {
				d.forcedAt[o.Group] = now
			}
		}
	case mobike.PathStateChanged:
		// A pair going down is the detection of a failover.
		if o.To == mobike.PathDown {
			for _, g := range d.core.GroupsOn(o.Pair) {
				if _, ok := d.forcedAt[g]; !ok {
					d.forcedAt[g] = now
				}
			}
		}
	case mobike.SAMoved:
		// charon moved the SA itself after the steer was given up as
		// unconfirmed: the failover still ended here (ike-update).
		if t, ok := d.forcedAt[o.Group]; ok && !o.Steered && o.To != o.From {
			dm.m.ObserveFailover(now.Sub(t))
			delete(d.forcedAt, o.Group)
		}
	case mobike.SteerConfirmed:
		if t, ok := d.forcedAt[o.Group]; ok {
			dm.m.ObserveFailover(now.Sub(t))
			delete(d.forcedAt, o.Group)
		}
	case mobike.SteerFailed:
		dm.m.ObserveSteerFailure(o.Cause)
	}
}

// publish refreshes the scrape snapshot from the core, and the probe and
// netlink counters from the prober's and the monitor's totals (loop
// goroutine, every second).
func (dm *daemonMetrics) publish(st mobike.State, d *daemon) {
	if dm.m == nil {
		return
	}
	s := pathsAndConns(st)
	s.VICIUp = st.CharonUp && dm.viciUp.Load()
	dm.probes.absorb(d.probes.Stats())
	dm.probes.flush(dm.m.ObserveProbe)
	// Each read of the kernel's state is triggered by netlink messages (a
	// burst is folded into one read) or, without a subscription, by polling.
	for n := d.mon.Stats().Reads; dm.netlinkSeen < n; dm.netlinkSeen++ {
		dm.m.ObserveNetlinkEvent()
	}
	dm.mu.Lock()
	dm.snap = s
	dm.mu.Unlock()
}

// pathsAndConns derives the scrape snapshot's paths, SAs and connections.
// Paths are published per steering group, not per connection: the members
// of a group share its pairs (1 001 connections to one gateway are 16 paths,
// not 16 016). Such a path's conn label is the group's key (its first
// member), its peer index the address's place in the group's peer set; for a
// group of one connection that is the connection and its own peer set. A
// connection in no group (not loaded in charon, no SA) has its own.
func pathsAndConns(st mobike.State) metrics.Snapshot {
	var s metrics.Snapshot
	uplinkOf := map[netip.Addr]string{}
	byRemote := map[netip.Addr][]int{} // indexes into st.Pairs
	for i, p := range st.Pairs {
		uplinkOf[p.Pair.Local] = p.Uplink
		byRemote[p.Pair.Remote] = append(byRemote[p.Pair.Remote], i)
	}
	// The peer set of every path owner: a group's key, or a lone connection.
	var owners []string
	peersOf := map[string][]netip.Addr{}
	s.Conns = make([]metrics.Conn, 0, len(st.Conns))
	for _, c := range st.Conns {
		mc := metrics.Conn{Name: c.Name, Current: uplinkOf[c.Current.Local]}
		for _, r := range c.Ranking {
			if r.Eligible {
				mc.Preferred = r.Uplink.Name
				break
			}
		}
		s.Conns = append(s.Conns, mc)
		owner := c.Name
		if len(c.Members) > 0 {
			owner = c.Members[0]
		}
		if _, ok := peersOf[owner]; !ok {
			owners = append(owners, owner)
		}
		peersOf[owner] = append(peersOf[owner], c.Peers...)
	}
	for _, owner := range owners {
		peers := peersOf[owner]
		slices.SortFunc(peers, netip.Addr.Compare)
		for i, peer := range slices.Compact(peers) {
			fam := "ipv4"
			if peer.Is6() {
				fam = "ipv6"
			}
			for _, j := range byRemote[peer] {
				p := &st.Pairs[j]
				rtt := math.NaN()
				if p.Stats.SRTT > 0 {
					rtt = p.Stats.SRTT.Seconds()
				}
				s.Paths = append(s.Paths, metrics.Path{Uplink: p.Uplink, Conn: owner, Peer: i, Family: fam,
					State: p.State.String(), RTT: rtt, Loss: p.Stats.LossRatio})
			}
		}
	}
	s.SAs = make([]metrics.SA, 0, len(st.SAs))
	for _, sa := range st.SAs {
		s.SAs = append(s.SAs, metrics.SA{Conn: sa.Conn, Uplink: uplinkOf[sa.Pair.Local]})
	}
	return s
}

func (dm *daemonMetrics) MetricsSnapshot() metrics.Snapshot {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.snap
}

// listenNetwork is the address net.Listen gets for a metrics listen address:
// [::]:PORT (from ":PORT") listens on every address of both families.
func listenAddress(addr netip.AddrPort) string {
	if addr.Addr() == netip.IPv6Unspecified() {
		return fmt.Sprintf(":%d", addr.Port())
	}
	return addr.String()
}

// serveMetrics starts the Prometheus listener through the exporter toolkit
// (TLS and basic auth from --web.config.file): a landing page at /, /metrics
// (mobiked's families plus the Go and process collectors), /livez (the
// decision loop answers; independent of charon), /readyz and /healthz
// (charon's VICI is up).
func (d *daemon) serveMetrics(ctx context.Context, addr netip.AddrPort) (*http.Server, error) {
	dm := d.metrics
	dm.reg = prometheus.NewRegistry()
	bi := buildinfo.Read()
	m, err := metrics.New(dm.reg, dm, metrics.Options{Build: metrics.BuildInfo{Version: bi.Version, Revision: bi.Revision, GoVersion: bi.GoVersion},
		RoamArms: d.steerer.Arms})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := dm.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: go collector: %w", err)
	}
	if err := dm.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: process collector: %w", err)
	}
	dm.m = m
	ln, err := net.Listen("tcp", listenAddress(addr))
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	ready := func() error {
		if !dm.viciUp.Load() {
			return errors.New("vici down")
		}
		return nil
	}
	mux := http.NewServeMux()
	mh := metrics.Handler(dm.reg, ready)
	mux.Handle("GET /metrics", mh)
	mux.Handle("GET /healthz", mh)
	mux.Handle("GET /readyz", rewrite("/healthz", mh))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := d.alive(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "%v\n", err)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "mobiked",
		Description: "MOBIKE path controller for strongSwan",
		Version:     bi.String(),
		Links: []web.LandingLinks{
			{Address: "metrics", Text: "Metrics"},
			{Address: "livez", Text: "Liveness", Description: "the decision loop answers (independent of charon)"},
			{Address: "readyz", Text: "Readiness", Description: "charon's VICI is up"},
		},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("metrics: landing page: %w", err)
	}
	mux.Handle("/", landing)
	var handler http.Handler = mux
	if os.Getenv("MOBIKED_DEBUG_PPROF") == "1" {
		// Debug knob, not configuration: Go's profiler on the metrics
		// listener (loopback by default), e.g. for heap profiles at scale.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		d.log.Warn("profiler enabled on the metrics listener", "addr", addr.String())
	}
	srv := d.serveHTTP("metrics listener", handler, ln, d.webServe(ln))
	// Refresh the scrape snapshot every second from the loop.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = d.loop.Do(ctx, func() { dm.publish(d.core.Snapshot(), d) })
			}
		}
	}()
	return srv, nil
}

// webServe serves the metrics listener through exporter-toolkit (TLS and
// basic auth from --web.config.file).
func (d *daemon) webServe(ln net.Listener) func(net.Listener, *http.Server) error {
	webFlags := &web.FlagConfig{WebListenAddresses: &[]string{ln.Addr().String()}, WebConfigFile: &d.f.webConfig}
	wlog := d.log.With("component", "metrics-listener")
	return func(l net.Listener, srv *http.Server) error { return web.Serve(l, srv, webFlags, wlog) }
}

// rewrite serves h as if the request were for path.
func rewrite(path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = path
		h.ServeHTTP(w, r2)
	})
}

// alive reports whether the decision loop answers within a second: the
// liveness of mobiked itself, whatever charon does.
func (d *daemon) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := d.loop.Do(ctx, func() {}); err != nil {
		return fmt.Errorf("decision loop does not answer: %w", err)
	}
	return nil
}

// probeTotals are cumulative probe counts of one uplink.
type probeTotals struct{ sent, lost, bytes uint64 }

// probeAccount turns the prober's cumulative totals into the per-uplink probe
// counters, exactly: sent from each prober's Sent (a prober that is replaced
// starts again at 0), bytes from the Manager's per-uplink octets, lost from
// the timed-out results the loop saw. It runs on the loop goroutine.
type probeAccount struct {
	pairSent    map[mobike.Pair]uint64 // Sent of each running prober at the last look
	pairUplink  map[mobike.Pair]string
	lostPending map[mobike.Pair]uint64 // lost results not yet given an uplink
	target      map[string]*probeTotals
	counted     map[string]*probeTotals // what the counters already show
}

func newProbeAccount() *probeAccount {
	return &probeAccount{
		pairSent: map[mobike.Pair]uint64{}, pairUplink: map[mobike.Pair]string{},
		lostPending: map[mobike.Pair]uint64{},
		target:      map[string]*probeTotals{}, counted: map[string]*probeTotals{},
	}
}

func (a *probeAccount) totals(m map[string]*probeTotals, uplink string) *probeTotals {
	t := m[uplink]
	if t == nil {
		t = &probeTotals{}
		m[uplink] = t
	}
	return t
}

// lost records one timed-out probe of pair.
func (a *probeAccount) lost(pair mobike.Pair) { a.lostPending[pair]++ }

// absorb takes the prober's state. Call it at every publish and before
// starting or stopping a prober, so that nothing a stopped prober sent is
// missed.
func (a *probeAccount) absorb(s probe.Snapshot) {
	running := make(map[mobike.Pair]bool, len(s.Pairs))
	for _, ps := range s.Pairs {
		running[ps.Pair] = true
		a.pairUplink[ps.Pair] = ps.Uplink
		prev := a.pairSent[ps.Pair]
		if ps.Stats.Sent < prev { // a new prober for the pair
			prev = 0
		}
		a.totals(a.target, ps.Uplink).sent += ps.Stats.Sent - prev
		a.pairSent[ps.Pair] = ps.Stats.Sent
	}
	for up, b := range s.UplinkBytes {
		a.totals(a.target, up).bytes = b
	}
	for pair, n := range a.lostPending {
		if up, ok := a.pairUplink[pair]; ok {
			a.totals(a.target, up).lost += n
		}
		delete(a.lostPending, pair) // a pair never seen running is not counted
	}
	for pair := range a.pairSent {
		if !running[pair] {
			delete(a.pairSent, pair)
			delete(a.pairUplink, pair)
		}
	}
}

// flush brings the counters up to the totals through observe (one call per
// probe, as metrics.ObserveProbe wants). A loss counted before its probe's
// send was seen waits for the next flush, so lost never exceeds sent.
func (a *probeAccount) flush(observe func(uplink string, bytes int, lost bool)) {
	ups := make([]string, 0, len(a.target))
	for up := range a.target {
		ups = append(ups, up)
	}
	slices.Sort(ups)
	for _, up := range ups {
		t, c := a.target[up], a.totals(a.counted, up)
		if t.sent <= c.sent {
			continue
		}
		ds := t.sent - c.sent
		dl := min(t.lost-c.lost, ds)
		db := t.bytes - c.bytes
		for i := range ds {
			b := 0
			if i == 0 {
				b = int(db)
			}
			observe(up, b, i < dl)
		}
		c.sent += ds
		c.lost += dl
		c.bytes += db
	}
}
