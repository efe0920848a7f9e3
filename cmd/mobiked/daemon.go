package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
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
	traffic *vici.TrafficPoller // the watched SAs' counters (in-band evidence)
	// closeTraffic releases the counter source's XFRM socket.
	closeTraffic func()
	steerer      *steer.Steerer
	metrics      *daemonMetrics
	// reflector answers peers' STAMP probes; nil when reflector.listen is
	// unset. Replaced on reload (loop).
	reflector *reflectorServer
	stampKey  []byte // loop

	trace *traceRing

	// loop: detection times of forced steers (by steering group), for the
	// failover histogram.
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
		Logger:          log, // the packages add their component themselves
		Table:           int(s.Table),
		UplinkTableBase: policy.UplinkTableFirst,
		UplinkTables:    policy.UplinkTables,
		MainPrio:        s.RulePriorityMin,
		SourcePrio:      s.RulePriorityMin + policy.RuleSourceOffset,
		ProhibitPrio:    s.RulePriorityMin + policy.RuleProhibitOffset,
		PeerPrio:        s.RulePriorityMin + policy.RulePeerOffset,
		PrioMax:         s.RulePriorityMax,
	}
}

// faultHookEnv names the crash-test hook: mobiked kills itself (SIGKILL)
// right after that many kernel changes of its steerer, e.g. in the middle of
// a remote move. For the lab test of crash repair only; not configuration.
const faultHookEnv = "MOBIKED_TEST_STEER_KILL_AFTER"

func faultHook(o *steer.Options, log *slog.Logger) {
	v := os.Getenv(faultHookEnv)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		log.Warn("ignoring "+faultHookEnv, "value", v)
		return
	}
	log.Warn("test hook armed: killing myself after kernel changes", "env", faultHookEnv, "ops", n)
	o.FaultAfterOps = n
	o.Fault = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
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
		Timeout:        cfg.Probes.Timeout, // 0 = adaptive
		MinTimeout:     cfg.Probes.MinTimeout,
		MaxTimeout:     cfg.Probes.MaxTimeout,
		DownAfter:      cfg.Probes.LossThreshold,
	}
}

func newDaemon(f flags, cfg *policy.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{f: f, cfg: cfg, log: log, trace: newTraceRing(4096), forcedAt: map[string]time.Time{},
		configPath: f.config, steers: map[string]mobike.SteerRequested{}}
	d.hooks = newHookRunner(log.With("component", "hook"), cfg.Hooks)
	var err error
	so := steerOptions(cfg, log)
	faultHook(&so, log)
	// The steerer keeps what a previous run left until the core's first
	// routing state (after charon's SA list) replaces it.
	d.steerer, err = steer.New(so)
	if err != nil {
		return nil, fmt.Errorf("steering: %w", err)
	}
	ignore := []int{so.Table}
	for i := range so.UplinkTables {
		ignore = append(ignore, so.UplinkTableBase+i)
	}
	d.mon, err = monitor.New(monitor.Options{Logger: log, IgnoreTables: ignore})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	key, err := stampKey(cfg.Reflector)
	if err != nil {
		return nil, err
	}
	if cfg.Reflector.Listen.IsValid() {
		d.reflector, err = listenReflector(cfg.Reflector.Listen, key, log)
		if err != nil {
			return nil, err
		}
	}
	d.stampKey = key
	d.probes = probe.NewManager(probe.Options{
		Logger:   log,
		STAMPKey: key,
		Profiles: probeProfiles(cfg),
		Transports: map[mobike.ProbeMethod]probe.Transport{
			mobike.ProbeIKE: probe.NewFuncTransport(newIKEProber().probe, nil, ike.DefaultTimeout),
		},
	})
	d.charon = vici.New(vici.Options{Socket: f.viciSocket, Logger: log})
	src, closeSrc := trafficSource(d.charon, log)
	d.closeTraffic = closeSrc
	d.traffic = vici.NewTrafficPoller(src, vici.TrafficOptions{Logger: log})
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
	goRun("traffic", d.traffic.Run)
	goRun("steer", d.steerer.Run)
	if d.reflector != nil {
		d.reflector.start(ctx)
		d.log.Info("stamp reflector listening", "addr", d.cfg.Reflector.Listen.String(), "authenticated", d.cfg.Reflector.Key != "")
	}
	for _, ch := range []<-chan mobike.Event{d.mon.Events(), d.charon.Events(), d.probes.Events(), d.steerer.Events(), d.traffic.Events()} {
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
	if d.closeTraffic != nil {
		d.closeTraffic()
	}
	if d.reflector != nil {
		d.reflector.stop()
	}
	return err
}

func configName(path string) string {
	if path == "" {
		return "none (zero-config)"
	}
	return path
}

// reload re-reads the config on SIGHUP; a bad file keeps the old config.
// Everything that can change at runtime is applied (policy, hooks, probe
// pacing and timeout, the STAMP key, the reflector); what needs a restart
// (steering table and priorities, metrics listener, control socket) keeps its
// running value and is named in the log. Running zero-config, it picks up
// DefaultConfig once that file exists.
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
	_ = d.loop.Do(ctx, func() { d.applyConfig(ctx, cfg) })
}

// applyConfig applies a new config on the loop goroutine; ctx is the
// daemon's (a new reflector runs under it).
func (d *daemon) applyConfig(ctx context.Context, cfg *policy.Config) {
	changes := policy.Diff(d.cfg, cfg)
	var refused []string
	for _, c := range changes {
		if c.Kind.NeedsRestart() {
			refused = append(refused, c.String())
		}
	}
	// Keep what needs a restart as it runs.
	cfg.Steering, cfg.MetricsListen, cfg.ControlSocket = d.cfg.Steering, d.cfg.MetricsListen, d.cfg.ControlSocket
	if len(refused) > 0 {
		msg := "reload: not applied, needs a restart: " + strings.Join(refused, "; ")
		d.log.Warn(msg)
		d.trace.add(control.Event{At: time.Now(), Kind: "reload", Text: msg})
	}
	if cfg.Probes != d.cfg.Probes {
		d.probes.SetProfiles(probeProfiles(cfg))
	}
	if cfg.Reflector != d.cfg.Reflector {
		key, err := stampKey(cfg.Reflector)
		if err != nil {
			d.log.Error("reload: reflector key; keeping the running reflector and key", "err", err)
			cfg.Reflector = d.cfg.Reflector
		} else if err := d.replaceReflector(ctx, cfg.Reflector, key); err != nil {
			d.log.Error("reload: reflector; keeping the running one", "err", err)
			cfg.Reflector = d.cfg.Reflector
		} else {
			d.probes.SetSTAMPKey(key)
			d.stampKey = key
		}
	}
	d.cfg = cfg
	d.configPath = d.f.config
	d.hooks.configure(cfg.Hooks)
	d.loop.Step(ctx, mobike.EvConfig{Policy: cfg.Settings()})
	for _, w := range cfg.Warnings() {
		d.log.Warn("config", "warning", w.String())
	}
	d.log.Info("reloaded config", "changes", len(changes), "refused", len(refused))
}

// replaceReflector starts the reflector of r (none when r.Listen is unset)
// and then stops the running one; on an error the running one stays.
func (d *daemon) replaceReflector(ctx context.Context, r policy.Reflector, key []byte) error {
	var next *reflectorServer
	if r.Listen.IsValid() {
		if old := d.reflector; old != nil {
			old.stop() // the new one may want the same port
		}
		var err error
		next, err = listenReflector(r.Listen, key, d.log)
		if err != nil {
			d.reflector = nil
			return err
		}
		next.start(ctx)
		d.log.Info("stamp reflector listening", "addr", r.Listen.String(), "authenticated", len(key) > 0)
	} else if d.reflector != nil {
		d.reflector.stop()
		d.log.Info("stamp reflector stopped")
	}
	d.reflector = next
	return nil
}

// Execute carries out one action of the core (runloop.Executor).
func (d *daemon) Execute(ctx context.Context, now time.Time, a mobike.Action) []mobike.Event {
	switch a := a.(type) {
	case mobike.ActProbeConfirm:
		if err := d.probes.Apply(a); err != nil {
			d.log.Warn("probe action failed", "action", fmt.Sprintf("%T", a), "err", err)
		}
	case mobike.ActProbeStart, mobike.ActProbeStop:
		d.metrics.probes.absorb(d.probes.Stats()) // before a prober goes away
		if err := d.probes.Apply(a); err != nil {
			d.log.Warn("probe action failed", "action", fmt.Sprintf("%T", a), "err", err)
		}
	case mobike.ActTrafficWatch:
		d.traffic.Watch(a)
	case mobike.ActArmRoam:
		// Off the loop, on the steerer's goroutine, ahead of any routing
		// state submitted with it.
		d.steerer.RequestArmRoam(a.LinkIdx, a.Pair.Local)
		d.log.Debug("charon roam arm requested", "path", a.Pair.String())
	case mobike.ActRouting:
		// Applied off the loop; the steerer reports back (EvRoutingApplied).
		d.steerer.Submit(a)
		d.log.Debug("routing state", "gen", a.Gen, "state", a.State.String())
	case mobike.ActAlert:
		d.metrics.observeAlert(a.Reason)
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

// observe runs after each Step on the loop goroutine: it records the trace
// and the metrics derived from it.
func (d *daemon) observe(now time.Time, ev mobike.Event, _ []mobike.Action) {
	switch e := ev.(type) {
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
