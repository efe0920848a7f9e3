package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/runloop"
	"github.com/mobiked/mobiked/monitor"
	"github.com/mobiked/mobiked/monitor/probe"
	"github.com/mobiked/mobiked/monitor/probe/ike"
	"github.com/mobiked/mobiked/policy"
	"github.com/mobiked/mobiked/vici"
	"github.com/mobiked/mobiked/vici/steer"
)

// daemon wires the adapters to the core. Only the runloop goroutine touches
// core, cfg and the fields marked "loop".
type daemon struct {
	f   flags
	cfg *policy.Config // loop
	log *slog.Logger

	core    *mobike.Controller
	loop    *runloop.Loop
	mon     *monitor.Monitor
	probes  *probe.Manager
	charon  *vici.Client
	steerer *steer.Steerer
	metrics *daemonMetrics
	// reflector answers peers' STAMP probes; nil when reflector.listen is unset.
	reflector *reflectorServer

	trace *traceRing

	// loop: what the steerer was last told about uplinks.
	uplinksKey string
	// loop: detection times of forced steers, for the failover histogram.
	forcedAt map[string]time.Time
	// loop: the config file in force ("" = zero-config).
	configPath string
	// hooks runs the operator's programs (on_move) off the loop.
	hooks *hookRunner
	// loop: the last steer requested per connection (from, cause), for the
	// on_move hook of its confirmation.
	steers map[string]mobike.SteerRequested
}

// steerOptions lays out the steerer's tables and rule priorities from the
// config, with the layout policy validates (policy.RuleProhibitOffset etc.).
func steerOptions(cfg *policy.Config, log *slog.Logger) steer.Options {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := cfg.Steering
	return steer.Options{
		Logger:          log.With("component", "steer"),
		Table:           int(s.Table),
		UplinkTableBase: policy.UplinkTableFirst,
		UplinkTables:    policy.UplinkTables,
		SourcePrio:      s.RulePriorityMin,
		ProhibitPrio:    s.RulePriorityMin + policy.RuleProhibitOffset,
		PeerPrio:        s.RulePriorityMin + policy.RulePeerOffset,
		PrioMax:         s.RulePriorityMax,
	}
}

func cleanup(cfg *policy.Config, log *slog.Logger) error {
	s, err := steer.New(steerOptions(cfg, log))
	if err != nil {
		return err
	}
	return s.Cleanup()
}

func probeProfiles(cfg *policy.Config) probe.Profiles {
	return probe.Profiles{
		Active:         cfg.Probes.ActiveInterval,
		Standby:        cfg.Probes.StandbyInterval,
		MeteredStandby: cfg.Probes.MeteredStandbyInterval,
		Timeout:        cfg.Probes.Timeout,
	}
}

func newDaemon(f flags, cfg *policy.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{f: f, cfg: cfg, log: log, trace: newTraceRing(4096), forcedAt: map[string]time.Time{},
		configPath: f.config, steers: map[string]mobike.SteerRequested{}}
	d.hooks = newHookRunner(log.With("component", "hook"), cfg.Hooks)
	var err error
	so := steerOptions(cfg, log)
	d.steerer, err = steer.New(so)
	if err != nil {
		return nil, fmt.Errorf("steering: %w", err)
	}
	if err := d.steerer.Reconcile(); err != nil {
		log.Warn("reconcile kernel state", "err", err)
	}
	ignore := []int{so.Table}
	for i := range so.UplinkTables {
		ignore = append(ignore, so.UplinkTableBase+i)
	}
	d.mon, err = monitor.New(monitor.Options{Logger: log.With("component", "monitor"), IgnoreTables: ignore})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	key, err := stampKey(cfg.Reflector)
	if err != nil {
		return nil, err
	}
	if cfg.Reflector.Listen.IsValid() {
		d.reflector, err = listenReflector(cfg.Reflector.Listen, key, log.With("component", "stamp-reflector"))
		if err != nil {
			return nil, err
		}
	}
	d.probes = probe.NewManager(probe.Options{
		Logger:   log.With("component", "probe"),
		STAMPKey: key,
		Profiles: probeProfiles(cfg),
		Transports: map[mobike.ProbeMethod]probe.Transport{
			mobike.ProbeIKE: probe.NewFuncTransport(ikeProbe, nil, ike.DefaultTimeout),
		},
	})
	d.charon = vici.New(vici.Options{Socket: f.viciSocket, Logger: log.With("component", "vici")})
	d.core = mobike.New(mobike.Config{Policy: cfg.Settings()})
	d.metrics = newDaemonMetrics()
	d.loop = runloop.New(d.core, d, nil, d.observe)
	return d, nil
}

func (d *daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun("hooks", d.hooks.run)
	goRun("monitor", d.mon.Run)
	goRun("vici", d.charon.Run)
	if d.reflector != nil {
		goRun("stamp reflector", d.reflector.serve)
		d.log.Info("stamp reflector listening", "addr", d.cfg.Reflector.Listen.String(), "authenticated", d.cfg.Reflector.Key != "")
	}
	for _, ch := range []<-chan mobike.Event{d.mon.Events(), d.charon.Events(), d.probes.Events()} {
		wg.Add(1)
		go func() { defer wg.Done(); d.loop.Source(ctx, ch) }()
	}
	srv, err := d.serveControl(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	if d.cfg.MetricsListen.IsValid() {
		msrv, err := d.serveMetrics(ctx, d.cfg.MetricsListen)
		if err != nil {
			return err
		}
		defer msrv.Close()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.reload(ctx)
			}
		}
	}()
	d.log.Info("started", "vici", d.f.viciSocket, "control", d.cfg.ControlSocket, "config", configName(d.f.config))
	lerr := make(chan error, 1)
	go func() { lerr <- d.loop.Run(ctx) }()
	d.notifyReady()
	go d.watchdog(ctx)
	defer d.notifyStopping()
	select {
	case err = <-errc:
		cancel()
	case err = <-lerr:
	}
	cancel()
	_ = d.probes.Close()
	_ = d.charon.Close()
	wg.Wait()
	return err
}

func configName(path string) string {
	if path == "" {
		return "none (zero-config)"
	}
	return path
}

// reload re-reads the config on SIGHUP; a bad file keeps the old config.
// Running zero-config, it picks up DefaultConfig once that file exists (the
// hooks and policy, not what needs a restart).
func (d *daemon) reload(ctx context.Context) {
	if d.f.config == "" {
		if _, err := os.Stat(DefaultConfig); err != nil {
			d.log.Info("reload: no config file (zero-config)")
			return
		}
		d.f.config = DefaultConfig
	}
	cfg, err := configure(d.f)
	if err != nil {
		d.log.Error("reload failed; keeping the running config", "err", err)
		return
	}
	_ = d.loop.Do(ctx, func() {
		changes := policy.Diff(d.cfg, cfg)
		for _, c := range changes {
			if c.Kind.NeedsRestart() {
				d.log.Warn("reload: change needs a restart to take effect", "change", c.String())
			}
		}
		d.cfg = cfg
		d.configPath = d.f.config
		d.hooks.configure(cfg.Hooks)
		d.loop.Step(ctx, mobike.EvConfig{Policy: cfg.Settings()})
		d.log.Info("reloaded config", "changes", len(changes))
	})
}

// Execute carries out one action of the core (runloop.Executor).
func (d *daemon) Execute(ctx context.Context, now time.Time, a mobike.Action) []mobike.Event {
	switch a := a.(type) {
	case mobike.ActProbeStart, mobike.ActProbeStop:
		d.metrics.probes.absorb(d.probes.Stats()) // before a prober goes away
		if err := d.probes.Apply(a); err != nil {
			d.log.Warn("probe action failed", "action", fmt.Sprintf("%T", a), "err", err)
		}
	case mobike.ActSteer:
		err := d.steerer.Apply(a)
		if err != nil {
			d.log.Error("steer failed", "conn", a.Peer, "pair", a.Pair.String(), "err", err)
		} else {
			d.log.Info("steering", "conn", a.Peer, "pair", a.Pair.String(), "uplink", a.Uplink, "reason", a.Reason)
		}
		return []mobike.Event{mobike.EvSteerApplied{Peer: a.Peer, Pair: a.Pair, Err: err}}
	case mobike.ActAlert:
		lvl := slog.LevelInfo
		switch a.Severity {
		case mobike.SevWarning:
			lvl = slog.LevelWarn
		case mobike.SevCritical:
			lvl = slog.LevelError
		}
		d.log.Log(ctx, lvl, "alert", "conn", a.Conn, "reason", a.Reason, "msg", a.Message)
		d.trace.add(control.Event{At: now, Kind: "alert", Text: fmt.Sprintf("%s %s: %s", a.Conn, a.Reason, a.Message)})
	}
	return nil
}

// observe runs after each Step on the loop goroutine: it keeps the steerer's
// per-uplink tables in line with the network, and records the trace.
func (d *daemon) observe(now time.Time, ev mobike.Event, _ []mobike.Action) {
	switch e := ev.(type) {
	case mobike.EvNetState:
		d.syncUplinks(e.State)
	case mobike.EvCharon:
		d.metrics.setViciUp(e.Up)
	case mobike.EvProbeResult:
		if !e.OK {
			d.metrics.probes.lost(e.Pair)
		}
	}
	for _, o := range d.core.TakeTrace() {
		text := o.String()
		kind := fmt.Sprintf("%T", o)
		if i := len("mobike."); len(kind) > i {
			kind = kind[i:]
		}
		d.trace.add(control.Event{At: now, Kind: kind, Text: text})
		d.metrics.observe(now, o, d)
		d.hookObserve(now, o)
		d.log.Info(kind, "trace", text)
	}
}

// uplinksFor derives the steerer's uplinks from the network state: links that
// are up, with the available addresses of each family that has a default
// route on that link (a gateway, or a point-to-point default without one).
// A link that is down, or a family without a default route (e.g. right after
// a link comes back, before its gateway is restored), gets no uplink table
// and no source rule: an on-link default route there would black-hole the
// probes and charon's packets from that address.
func uplinksFor(ns mobike.NetState) []steer.Uplink {
	var ups []steer.Uplink
	for _, l := range ns.Links {
		if !l.Up {
			continue
		}
		u := steer.Uplink{Name: l.Name, LinkIdx: l.Index}
		fam := map[bool]bool{} // is4 -> has a default route
		p2p := false
		for _, g := range ns.Gateways {
			if g.LinkIdx != l.Index {
				continue
			}
			if !g.Via.IsValid() {
				p2p = true
				continue
			}
			if !fam[g.Via.Is4()] {
				fam[g.Via.Is4()] = true
				u.Gateways = append(u.Gateways, g.Via)
			}
		}
		for _, a := range ns.Addrs {
			if a.LinkIdx == l.Index && monitor.Available(a) && (p2p || fam[a.Prefix.Addr().Is4()]) {
				u.Local = append(u.Local, a.Prefix.Addr())
			}
		}
		if len(u.Local) == 0 {
			continue
		}
		slices.SortFunc(u.Local, netip.Addr.Compare)
		slices.SortFunc(u.Gateways, netip.Addr.Compare)
		ups = append(ups, u)
	}
	return ups
}

// syncUplinks tells the steerer each uplink's addresses and gateways (source
// rules and per-uplink tables), when they changed.
func (d *daemon) syncUplinks(ns mobike.NetState) {
	ups := uplinksFor(ns)
	key := fmt.Sprint(ups)
	if key == d.uplinksKey {
		return
	}
	if err := d.steerer.SetUplinks(ups); err != nil {
		d.log.Error("set uplinks", "err", err)
		return
	}
	d.log.Debug("uplinks", "uplinks", key)
	d.uplinksKey = key
}
