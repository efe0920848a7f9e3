package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor/metrics"
)

// daemonMetrics derives counters from the core's trace; state metrics are
// read at scrape time from a snapshot the loop publishes.
type daemonMetrics struct {
	netlinkEvents atomic.Int64
	viciUp        atomic.Bool
	m             *metrics.Metrics
	reg           *prometheus.Registry

	mu   sync.Mutex // guards snap
	snap metrics.Snapshot

	probeSeen map[mobike.Pair]uint64 // loop: probes already counted per pair
}

func newDaemonMetrics() *daemonMetrics {
	return &daemonMetrics{probeSeen: map[mobike.Pair]uint64{}}
}

func (dm *daemonMetrics) setViciUp(up bool) { dm.viciUp.Store(up) }

// steerReason maps the core's steer reason text onto the closed label set.
func steerReason(o mobike.SteerRequested) string {
	switch {
	case o.Forced:
		return "path-down"
	case strings.Contains(o.Reason, "prefer"):
		return "manual"
	case strings.Contains(o.Reason, "sla"), strings.Contains(o.Reason, "SLA"):
		return "sla-breach"
	}
	return "better-path"
}

func failureReason(r string) string {
	switch {
	case strings.HasPrefix(r, "apply"):
		return "kernel-error"
	case strings.Contains(r, "charon"), strings.Contains(r, "vici"):
		return "vici-down"
	case strings.Contains(r, "unconfirmed"):
		return "unconfirmed"
	}
	return "wrong-path"
}

// observe turns one trace observation into counter updates (loop goroutine).
func (dm *daemonMetrics) observe(now time.Time, o mobike.Observation, d *daemon) {
	if dm.m == nil {
		return
	}
	switch o := o.(type) {
	case mobike.SteerRequested:
		dm.m.ObserveSteer(steerReason(o))
		if o.Forced {
			if _, ok := d.forcedAt[o.Conn]; !ok {
				d.forcedAt[o.Conn] = now
			}
		}
	case mobike.PathStateChanged:
		// A pair going down is the detection of a failover.
		if o.To.String() == "down" {
			for _, c := range d.core.Snapshot().Conns {
				if c.Current == o.Pair {
					if _, ok := d.forcedAt[c.Name]; !ok {
						d.forcedAt[c.Name] = now
					}
				}
			}
		}
	case mobike.SteerConfirmed:
		if t, ok := d.forcedAt[o.Conn]; ok {
			dm.m.ObserveFailover(now.Sub(t))
			delete(d.forcedAt, o.Conn)
		}
	case mobike.SteerFailed:
		dm.m.ObserveSteerFailure(failureReason(o.Reason))
	}
}

// publish refreshes the scrape snapshot from the core (loop goroutine).
func (dm *daemonMetrics) publish(st mobike.State, d *daemon) {
	if dm.m == nil {
		return
	}
	var s metrics.Snapshot
	s.VICIUp = st.CharonUp && dm.viciUp.Load()
	uplinkOf := map[netip.Addr]string{}
	for _, p := range st.Pairs {
		uplinkOf[p.Pair.Local] = p.Uplink
	}
	for _, c := range st.Conns {
		mc := metrics.Conn{Name: c.Name, Current: uplinkOf[c.Current.Local]}
		for _, r := range c.Ranking {
			if r.Eligible {
				mc.Preferred = r.Uplink.Name
				break
			}
		}
		s.Conns = append(s.Conns, mc)
		for i, peer := range c.Peers {
			for _, p := range st.Pairs {
				if p.Pair.Remote != peer {
					continue
				}
				fam := "ipv4"
				if peer.Is6() {
					fam = "ipv6"
				}
				rtt := math.NaN()
				if p.Stats.SRTT > 0 {
					rtt = p.Stats.SRTT.Seconds()
				}
				s.Paths = append(s.Paths, metrics.Path{Uplink: p.Uplink, Conn: c.Name, Peer: i, Family: fam,
					State: p.State.String(), RTT: rtt, Loss: p.Stats.LossRatio})
			}
		}
	}
	for _, sa := range st.SAs {
		s.SAs = append(s.SAs, metrics.SA{Conn: sa.Conn, Uplink: uplinkOf[sa.Pair.Local]})
	}
	// Probe counters from the prober's cumulative stats.
	for _, p := range st.Pairs {
		prev := dm.probeSeen[p.Pair]
		if p.Stats.Sent > prev {
			n := p.Stats.Sent - prev
			lostNow := uint64(0)
			if p.Stats.Sent > 0 {
				lostNow = uint64(math.Round(float64(n) * p.Stats.LossRatio))
			}
			per := 0
			if p.Stats.Sent > 0 {
				per = int(p.Stats.BytesSent / p.Stats.Sent)
			}
			for i := uint64(0); i < n; i++ {
				dm.m.ObserveProbe(p.Uplink, per, i < lostNow)
			}
			dm.probeSeen[p.Pair] = p.Stats.Sent
		}
	}
	dm.mu.Lock()
	dm.snap = s
	dm.mu.Unlock()
}

func (dm *daemonMetrics) MetricsSnapshot() metrics.Snapshot {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.snap
}

// serveMetrics starts the Prometheus listener (/metrics, /healthz).
func (d *daemon) serveMetrics(ctx context.Context, addr netip.AddrPort) (*http.Server, error) {
	dm := d.metrics
	dm.reg = prometheus.NewRegistry()
	m, err := metrics.New(dm.reg, dm, metrics.Options{Build: metrics.BuildInfo{Version: version}})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	dm.m = m
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	health := func() error {
		if !dm.viciUp.Load() {
			return errors.New("vici down")
		}
		return nil
	}
	srv := &http.Server{Handler: metrics.Handler(dm.reg, health), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
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

const version = "0.1.0-dev"
