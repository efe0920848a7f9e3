package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

// benchPingInterval is the tunnel ping interval of every scenario.
const benchPingInterval = 10 * time.Millisecond

// charonAloneCap bounds how long charon alone is watched when it does not
// recover by itself (its DPD and retransmits take minutes).
const charonAloneCap = 30 * time.Second

// scenario is one bench scenario. act applies the impairment(s) through r and
// waits; r.ref marks the impairment the measurement is relative to.
type scenario struct {
	name string
	desc string
	natB bool
	act  func(ctx context.Context, r *benchRun) error
}

var scenarios = []scenario{
	{name: "linkdown", desc: "link of the active uplink goes down", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkDown}, true, "a link down"); err != nil {
			return err
		}
		return r.sleep(ctx, 8*time.Second)
	}},
	{name: "blackhole", desc: "active uplink silently drops everything", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}, true, "a blackhole"); err != nil {
			return err
		}
		return r.sleep(ctx, r.pick(charonAloneCap, 8*time.Second))
	}},
	{name: "gwfail", desc: "the gateway address in use silently drops everything", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "gw1", lab.Impairment{Kind: lab.Blackhole}, true, "gw1 blackhole"); err != nil {
			return err
		}
		return r.sleep(ctx, r.pick(charonAloneCap, 8*time.Second))
	}},
	{name: "loss30", desc: "30 % loss on the active uplink", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.Loss, LossPct: 30}, true, "a 30% loss"); err != nil {
			return err
		}
		return r.sleep(ctx, 10*time.Second)
	}},
	{name: "slowpath", desc: "both uplinks become 300 ms ± 50 ms paths (no move wanted)", act: func(ctx context.Context, r *benchRun) error {
		// 150 ms ± 25 ms each way, user-space delay lines in the router.
		// Both uplinks, so that no pair is faster: any move would come from
		// a pair wrongly declared down (a slow uplink next to a fast one of
		// the same priority is rightly left for the fast one).
		if err := r.delay(ctx, "a", 150*time.Millisecond, 25*time.Millisecond, "a, b 300±50ms RTT"); err != nil {
			return err
		}
		if err := r.l.SetDelay(ctx, "b", 150*time.Millisecond, 25*time.Millisecond); err != nil {
			return err
		}
		return r.sleep(ctx, 30*time.Second)
	}},
	{name: "loss5", desc: "5 % round-trip loss on the active uplink (2.5 % each way; no move wanted)", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.Loss, LossPct: 2.5}, true, "a 5% loss"); err != nil {
			return err
		}
		return r.sleep(ctx, 30*time.Second)
	}},
	{name: "failback", desc: "the preferred uplink returns after a failover", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkDown}, false, "a link down"); err != nil {
			return err
		}
		r.waitOffA(ctx, 15*time.Second)
		if err := r.sleep(ctx, 2*time.Second); err != nil {
			return err
		}
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkUp}, true, "a link up"); err != nil {
			return err
		}
		// The lab config's hold-down is 5 s; leave room for a loaded machine.
		return r.sleep(ctx, 15*time.Second)
	}},
	{name: "flap", desc: "active uplink's link flaps every 1 s for 30 s", act: func(ctx context.Context, r *benchRun) error {
		// Toggle on an absolute 1 s schedule, so that slow ip commands on a
		// loaded machine do not stretch the 30 s.
		t0 := time.Now()
		for i := 0; i < 30; i++ {
			k, label := lab.LinkDown, "down"
			if i%2 == 1 {
				k, label = lab.LinkUp, "up"
			}
			if err := r.impair(ctx, "a", lab.Impairment{Kind: k}, i == 0, label); err != nil {
				return err
			}
			if err := r.sleep(ctx, time.Until(t0.Add(time.Duration(i+1)*time.Second))); err != nil {
				return err
			}
		}
		return r.sleep(ctx, 8*time.Second)
	}},
	{name: "natmove", desc: "failover onto the NATed uplink b, then back", natB: true, act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkDown}, true, "a link down"); err != nil {
			return err
		}
		r.waitOffA(ctx, 15*time.Second)
		if err := r.sleep(ctx, 3*time.Second); err != nil {
			return err
		}
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkUp}, false, "a link up"); err != nil {
			return err
		}
		return r.sleep(ctx, 15*time.Second)
	}},
	{name: "scale", desc: "many IKE SAs, then a blackhole of the active uplink", act: func(ctx context.Context, r *benchRun) error {
		if err := r.impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}, true, "a blackhole"); err != nil {
			return err
		}
		// Wait until every SA moved (or the cap), then a little more.
		deadline := time.Now().Add(r.pick(charonAloneCap, 20*time.Second))
		for time.Now().Before(deadline) {
			if r.movedCount() >= r.sas+1 {
				break
			}
			if err := r.sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
		return r.sleep(ctx, 2*time.Second)
	}},
}

// allScenarios are the names --scenario accepts.
var allScenarios = []string{"linkdown", "blackhole", "gwfail", "loss30", "slowpath", "loss5", "failback", "flap", "natmove", "scale"}

// defaultScenarios run when --scenario is not given: all but scale, whose
// setup of 1 000 SAs alone takes minutes per mode on a 2-core machine (run it
// with --scenario scale).
var defaultScenarios = allScenarios[:len(allScenarios)-1]

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, strings.Split(v, ",")...); return nil }

type benchConfig struct {
	name       string
	runs       int
	sas        int
	modes      []Mode
	mobikedBin string
	config     string // mobiked YAML; "" = lab.LabMobikedConfig
	profile    string // "lab", "defaults" (no config file) or the config file's name
	lead       time.Duration
	logDir     string        // keep mobiked's and charon's logs here
	dpd        time.Duration // mn's dpd_delay
	out        io.Writer
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mobike-lab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "mbench", "lab name (prefix of its namespaces)")
	runs := fs.Int("runs", 1, "runs per scenario and mode")
	var scs stringList
	fs.Var(&scs, "scenario", "scenario to run (repeatable or comma-separated; default all but scale): "+strings.Join(allScenarios, ", "))
	jsonOut := fs.String("json", "", "write the results as JSON to FILE")
	svgDir := fs.String("svg", "", "write one SVG timeline per scenario into DIR")
	sas := fs.Int("sas", 1000, "IKE SAs of the scale scenario")
	modes := fs.String("modes", "charon,mobiked", "modes to run: charon, mobiked or both")
	cfgFile := fs.String("mobiked-config", "", "mobiked configuration YAML (default: the lab's)")
	profile := fs.String("profile", "lab", "mobiked's configuration: lab (the lab's tuned config) or defaults (no config file at all)")
	logDir := fs.String("logs", "", "keep each run's mobiked and charon logs in DIR")
	dpd := fs.Duration("dpd", 5*time.Second, "mn's charon dpd_delay for every connection (lab SA and scale SAs)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dpd < time.Second {
		return usageError{errors.New("--dpd must be at least 1s")}
	}
	if *runs < 1 {
		return usageError{errors.New("--runs must be at least 1")}
	}
	if len(scs) == 0 {
		scs = defaultScenarios
	}
	var chosen []scenario
	for _, n := range scs {
		found := false
		for _, s := range scenarios {
			if s.name == n {
				chosen = append(chosen, s)
				found = true
			}
		}
		if !found {
			return usageError{fmt.Errorf("unknown scenario %q (want %s)", n, strings.Join(allScenarios, ", "))}
		}
	}
	cfg := benchConfig{name: *name, runs: *runs, sas: *sas, lead: 3 * time.Second, out: stdout, profile: "lab", logDir: *logDir, dpd: *dpd}
	for _, m := range strings.Split(*modes, ",") {
		switch Mode(m) {
		case ModeCharon, ModeMobiked:
			cfg.modes = append(cfg.modes, Mode(m))
		default:
			return usageError{fmt.Errorf("unknown mode %q (want charon or mobiked)", m)}
		}
	}
	switch *profile {
	case "lab":
	case "defaults":
		if *cfgFile != "" {
			return usageError{errors.New("--profile defaults runs mobiked without a config file: drop --mobiked-config")}
		}
		cfg.profile = "defaults"
	default:
		return usageError{fmt.Errorf("unknown profile %q (want lab or defaults)", *profile)}
	}
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return err
		}
		cfg.config, cfg.profile = string(b), filepath.Base(*cfgFile)
	}
	for _, m := range cfg.modes {
		if m == ModeMobiked {
			bin, err := mobikedBin()
			if err != nil {
				return err
			}
			cfg.mobikedBin = bin
		}
	}
	rep := Report{Machine: machineInfo(ctx), Command: "mobike-lab bench " + strings.Join(args, " "), Started: time.Now().UTC()}
	fmt.Fprintf(stdout, "bench: %d CPUs, kernel %s, %s, load %s\n", rep.Machine.NProc, rep.Machine.Kernel, rep.Machine.Charon, rep.Machine.LoadAvg)
	failed := 0
	for _, sc := range chosen {
		var panels []svgSeries
		for _, m := range cfg.modes {
			res := ScenarioResult{Name: sc.name, Mode: m}
			for i := 0; i < cfg.runs; i++ {
				fmt.Fprintf(stdout, "== %s / %s run %d/%d: %s\n", sc.name, m, i+1, cfg.runs, sc.desc)
				rm, err := runScenario(ctx, cfg, sc, m, i+1)
				if err != nil {
					if ctx.Err() != nil {
						return fmt.Errorf("%s/%s: %w", sc.name, m, err)
					}
					// One failed run must not lose the others: record it.
					fmt.Fprintf(stdout, "   run failed: %v\n", err)
					rm.Note, rm.Failed = "run failed: "+err.Error(), true
					failed++
				}
				fmt.Fprintf(stdout, "   outage %.3fs lost %d recovered %v SA survived %v moves %d confirm %s probe %d B (active pair %.0f B/s) path %s load %s %s\n",
					rm.OutageS, rm.Lost, rm.Recovered, rm.SASurvived, rm.Moves, fmtPtr(rm.ConfirmS), rm.ProbeBytes, rm.ProbeBpsActive, rm.Path, rm.Load, rm.Note)
				if i == 0 {
					label := "charon alone (DPD 5 s)"
					if m == ModeMobiked {
						label = "charon + mobiked (" + cfg.profile + " profile)"
					}
					panels = append(panels, svgSeries{Label: label, Samples: rm.Samples, Marks: rm.Marks})
				}
				res.Runs = append(res.Runs, rm)
			}
			rep.Scenarios = append(rep.Scenarios, res)
		}
		if *svgDir != "" {
			if err := os.MkdirAll(*svgDir, 0o755); err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := renderSVG(&buf, sc.name+": "+sc.desc+" (10 ms tunnel ping)", panels); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(*svgDir, sc.name+".svg"), buf.Bytes(), 0o644); err != nil {
				return err
			}
		}
	}
	fmt.Fprintln(stdout)
	if err := writeTable(stdout, rep.Scenarios); err != nil {
		return err
	}
	writeNotes(stdout, rep.Scenarios)
	if *jsonOut != "" {
		var buf bytes.Buffer
		if err := writeJSON(&buf, rep); err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d run(s) failed (see the notes above)", failed)
	}
	return nil
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.3fs", *p)
}

// benchRun is the state of one scenario run.
type benchRun struct {
	l      *lab.Lab
	mode   Mode
	sas    int
	pingT0 time.Time
	ref    time.Time
	marks  []mark // T relative to pingT0 until the run ends
	rec    *lab.SAEventRecorder
}

func (r *benchRun) pick(charon, mobiked time.Duration) time.Duration {
	if r.mode == ModeCharon {
		return charon
	}
	return mobiked
}

func (r *benchRun) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// impair applies imp to path and marks it; isRef makes it the reference of
// the measurements.
func (r *benchRun) impair(ctx context.Context, path string, imp lab.Impairment, isRef bool, label string) error {
	at := time.Now()
	if err := r.l.Impair(ctx, path, imp); err != nil {
		return err
	}
	kind := "action"
	if isRef {
		r.ref, kind = at, "impair"
	}
	r.marks = append(r.marks, mark{T: at.Sub(r.pingT0).Seconds(), Kind: kind, Label: label})
	return nil
}

// delay puts a delay line on path and marks it as the impairment.
func (r *benchRun) delay(ctx context.Context, path string, d, jitter time.Duration, label string) error {
	at := time.Now()
	if err := r.l.SetDelay(ctx, path, d, jitter); err != nil {
		return err
	}
	r.ref = at
	r.marks = append(r.marks, mark{T: at.Sub(r.pingT0).Seconds(), Kind: "impair", Label: label})
	return nil
}

// waitOffA waits until the lab SA left uplink a (best effort: charon alone
// may never move).
func (r *benchRun) waitOffA(ctx context.Context, timeout time.Duration) {
	_, _ = r.l.WaitSA(ctx, timeout, func(s lab.SAInfo) bool {
		return s.LocalHost != lab.MNAddrA.String() && s.LocalHost != lab.MNAddr6A.String()
	})
}

// movedCount counts distinct SAs with an ike-update off the starting local
// address.
func (r *benchRun) movedCount() int {
	seen := map[string]bool{}
	for _, e := range r.rec.Events() {
		if e.Name == "ike-update" && !r.onA(e.Local) && !e.At.Before(r.ref) {
			seen[e.UniqueID] = true
		}
	}
	return len(seen)
}

// onA reports whether local is one of uplink a's addresses.
func (r *benchRun) onA(local string) bool {
	return local == lab.MNAddrA.String() || local == lab.MNAddr6A.String()
}

// runScenario brings a fresh lab up in mode, runs sc once and measures it.
func runScenario(ctx context.Context, cfg benchConfig, sc scenario, m Mode, run int) (RunMetrics, error) {
	o := lab.Options{Name: cfg.name, DPD: cfg.dpd, NATB: sc.natB}
	if sc.name == "scale" {
		o.ExtraConns = cfg.sas
	}
	if m == ModeMobiked {
		o.Controller, o.ControllerConf = true, deploy.MobikedConf
		o.StartController = func(ctx context.Context, l *lab.Lab) (int, error) {
			if cfg.profile == "defaults" {
				return l.StartMobikedZeroConfig(ctx, cfg.mobikedBin)
			}
			return l.StartMobiked(ctx, cfg.mobikedBin, cfg.config)
		}
	}
	l, err := lab.Up(ctx, o)
	if err != nil {
		return RunMetrics{}, err
	}
	defer func() {
		if cfg.logDir != "" {
			keepLogs(l, cfg.logDir, fmt.Sprintf("%s-%s-%d", sc.name, m, run))
		}
		_ = l.Close(context.Background())
	}()
	rm := RunMetrics{}
	if m == ModeMobiked {
		rm.Profile = cfg.profile
	}
	r := &benchRun{l: l, mode: m, sas: 0}
	var setup time.Duration
	if sc.name == "scale" {
		t0 := time.Now()
		up, err := startScaleSAs(ctx, l, cfg.sas, cfg.out)
		if err != nil {
			return rm, err
		}
		if up == 0 {
			return rm, fmt.Errorf("none of the %d extra SAs came up", cfg.sas)
		}
		r.sas = up
		setup = time.Since(t0)
		fmt.Fprintf(cfg.out, "   %d of %d extra SAs established in %.1fs\n", up, cfg.sas, setup.Seconds())
	}
	if m == ModeMobiked {
		// failover must be possible: a working pair from each uplink (the
		// lab config knows the gateway's 4 addresses, zero-config only the
		// connection's one)
		if err := waitFailoverReady(ctx, l, 20*time.Second); err != nil {
			return rm, err
		}
	}
	sa0, err := l.SA(ctx)
	if err != nil {
		return rm, err
	}
	vip, err := l.VIP(ctx)
	if err != nil {
		return rm, err
	}
	rec, err := l.RecordSAEvents()
	if err != nil {
		return rm, err
	}
	defer rec.Close()
	r.rec = rec
	var probe0 float64
	if m == ModeMobiked {
		probe0, _ = l.MobikedMetric(ctx, "mobike_probe_bytes_total")
	}
	pinger, err := l.StartPinger(ctx, vip, benchPingInterval)
	if err != nil {
		return rm, err
	}
	r.pingT0 = pinger.Start()
	var cpu0 lab.ProcStats
	var udp0gw, udp0mn uint64 // UDP receive-buffer drops before the impairment
	var udp0gwOK, udp0mnOK bool
	mpid := l.St.Pids["mobiked"]
	actErr := func() error {
		var p0 []control.PathRow
		var t0 time.Time
		if m == ModeMobiked {
			p0, t0 = activePaths(ctx, l), time.Now()
		}
		if err := r.sleep(ctx, cfg.lead); err != nil {
			return err
		}
		if m == ModeMobiked {
			rm.ProbeBpsActive = activeBps(p0, activePaths(ctx, l), time.Since(t0))
		}
		if mpid > 0 {
			cpu0, _ = lab.ReadProcStats(mpid)
		}
		if sc.name == "scale" {
			u, err := udpRcvbufErrors(ctx, l, "gw")
			udp0gw, udp0gwOK = u, err == nil
			u, err = udpRcvbufErrors(ctx, l, "mn")
			udp0mn, udp0mnOK = u, err == nil
		}
		return sc.act(ctx, r)
	}()
	samples := pinger.Stop(time.Second)
	if actErr != nil {
		return rm, actErr
	}
	end := time.Now()
	if m == ModeMobiked {
		if p1, err := l.MobikedMetric(ctx, "mobike_probe_bytes_total"); err == nil && p1 >= probe0 {
			rm.ProbeBytes = uint64(p1 - probe0)
		} else if err != nil {
			rm.Extra = append(rm.Extra, "probe bytes unavailable: "+err.Error())
		}
	}
	ref := r.ref.Sub(r.pingT0)
	rm.ImpairAtS = ref.Seconds()
	outage, lost, recovered := pingStats(samples, ref)
	rm.OutageS, rm.Lost, rm.Recovered = outage.Seconds(), lost, recovered
	rm.WindowS = end.Sub(r.ref).Seconds()
	if !recovered {
		rm.Note = fmt.Sprintf("no recovery within %.0f s", rm.WindowS)
	}
	evs := rec.Events()
	rm.Moves, rm.ConfirmS, rm.Path = saMoves(evs, "lab", sa0.LocalHost, sa0.RemoteHost, r.ref)
	if sa, err := l.SA(ctx); err == nil && sa.UniqueID == sa0.UniqueID && sa.State == "ESTABLISHED" {
		rm.SASurvived = true
	}
	for _, s := range samples {
		rtt := -1.0
		if s.RTT >= 0 {
			rtt = float64(s.RTT) / float64(time.Millisecond)
		}
		rm.Samples = append(rm.Samples, sample{T: (s.Sent - ref).Seconds(), RTT: rtt})
	}
	for _, mk := range r.marks {
		rm.Marks = append(rm.Marks, mark{T: mk.T - ref.Seconds(), Kind: mk.Kind, Label: mk.Label})
	}
	for _, e := range evs {
		if e.Name == "ike-update" && e.Conn == "lab" {
			rm.Marks = append(rm.Marks, mark{T: e.At.Sub(r.ref).Seconds(), Kind: "move", Label: "→" + uplinkLabel(e.Local, e.Remote)})
		}
	}
	if sc.name == "scale" {
		s := &Scale{SAs: r.sas + 1, SetupS: setup.Seconds(), Moved: r.movedCount(), MobikedPID: mpid}
		var last time.Time
		var times []float64
		seen := map[string]bool{}
		for _, e := range evs {
			if e.Name == "ike-update" && !r.onA(e.Local) && !e.At.Before(r.ref) && !seen[e.UniqueID] {
				seen[e.UniqueID] = true
				last = e.At
				times = append(times, e.At.Sub(r.ref).Seconds())
			}
		}
		s.MovedP50S, s.MovedP90S, s.Within1500ms = moveQuantiles(times, 1.5)
		if b, err := os.ReadFile(l.CharonLog("mn")); err == nil {
			cs := charonLogSplit(b, r.ref)
			s.CharonDPDs, s.CharonRetransmits, s.CharonPathProbings = cs.dpds, cs.retransmits, cs.probings
			s.CharonRoamed, s.CharonRoamFirstS, s.CharonRoamLastS = cs.roamed, cs.roamFirst.Seconds(), cs.roamLast.Seconds()
			s.CharonDelayedSAs, s.CharonDelayedMovedS, s.CharonUndelayedMovedS = cs.delayed, cs.delayedMoved.Seconds(), cs.movedUndelayed.Seconds()
		}
		if b, err := os.ReadFile(l.MobikedLog()); err == nil {
			if d, ok := mobikedSteerAt(b, r.ref); ok {
				s.SteerS = d.Seconds()
			}
		}
		for _, n := range []struct {
			node string
			v0   uint64
			ok0  bool
			dst  *uint64
		}{{"gw", udp0gw, udp0gwOK, &s.GWUDPRcvbufErrors}, {"mn", udp0mn, udp0mnOK, &s.MNUDPRcvbufErrors}} {
			if v, err := udpRcvbufErrors(ctx, l, n.node); err == nil && n.ok0 && v >= n.v0 {
				*n.dst = v - n.v0
			}
		}
		if s.Moved >= r.sas+1 {
			d := last.Sub(r.ref).Seconds()
			s.AllMovedS = &d
		}
		if mpid > 0 {
			if ps, err := lab.ReadProcStats(mpid); err == nil {
				s.RSSMB = float64(ps.RSSBytes) / (1 << 20)
				s.PeakRSSMB = float64(ps.HWMBytes) / (1 << 20)
				s.CPUS = (ps.CPU - cpu0.CPU).Seconds()
				s.CPUTotalS = ps.CPU.Seconds()
			}
		}
		rm.Scale = s
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rm.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return rm, nil
}

// charonSplit is what the mn charon's log (time_format %T, time_add_ms,
// ike_name) tells about a scale run after the impairment.
type charonSplit struct {
	dpds, retransmits, probings int
	// roamFirst, roamLast: when charon first and last noticed, for an
	// IKE_SA, that the steered route made its path "not preferred anymore"
	// (since the impairment); roamed counts those IKE_SAs.
	roamFirst, roamLast time.Duration
	roamed              int
	// delayed: IKE_SAs whose MOBIKE update had to wait for an exchange in
	// flight (a DPD sent on the dead path); delayedMoved the time of the
	// last of them to change its local address.
	delayed      int
	delayedMoved time.Duration
	// movedUndelayed: the last local-address change of the other IKE_SAs.
	movedUndelayed time.Duration
}

// charonLogSplit parses a charon log from ref's time of day on (the log
// has no date: a run is assumed not to span midnight).
func charonLogSplit(log []byte, ref time.Time) charonSplit {
	var cs charonSplit
	from := ref.Format("15:04:05.000")
	day := time.Date(ref.Year(), ref.Month(), ref.Day(), 0, 0, 0, 0, ref.Location())
	roamed, delayed, moved := map[string]bool{}, map[string]bool{}, map[string]time.Duration{}
	for _, line := range strings.Split(string(log), "\n") {
		if len(line) < len(from) || line[:len(from)] < from {
			continue
		}
		tod, err := time.ParseInLocation("15:04:05.000", line[:len(from)], ref.Location())
		if err != nil {
			continue
		}
		at := day.Add(tod.Sub(time.Date(0, 1, 1, 0, 0, 0, 0, ref.Location()))).Sub(ref)
		sa := ""
		if i := strings.Index(line, "> "); i > 0 {
			if j := strings.LastIndex(line[:i], " <"); j > 0 {
				sa = line[j+2 : i]
			}
		}
		switch {
		case strings.Contains(line, "sending DPD request"):
			cs.dpds++
		case strings.Contains(line, " retransmit ") && strings.Contains(line, " of request"):
			cs.retransmits++
		case strings.Contains(line, "path probing attempt"):
			cs.probings++
		case strings.Contains(line, "old path is not preferred anymore") && sa != "" && !roamed[sa]:
			roamed[sa] = true
			if cs.roamed == 0 {
				cs.roamFirst = at
			}
			cs.roamed++
			cs.roamLast = at
		case strings.Contains(line, "delaying task initiation") && roamed[sa]:
			delayed[sa] = true
		case strings.Contains(line, "local endpoint changed") && sa != "":
			if _, ok := moved[sa]; !ok {
				moved[sa] = at
			}
		}
	}
	cs.delayed = len(delayed)
	for sa, at := range moved {
		if delayed[sa] {
			cs.delayedMoved = max(cs.delayedMoved, at)
		} else {
			cs.movedUndelayed = max(cs.movedUndelayed, at)
		}
	}
	return cs
}

// mobikedSteerAt is the time of the first steer request at or after ref in
// mobiked's log (slog text: time=RFC 3339 ... msg=SteerRequested); ok is
// false when there is none.
func mobikedSteerAt(log []byte, ref time.Time) (time.Duration, bool) {
	for _, line := range strings.Split(string(log), "\n") {
		if !strings.Contains(line, "msg=SteerRequested") || !strings.HasPrefix(line, "time=") {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, f)
		if err != nil || at.Before(ref) {
			continue
		}
		return at.Sub(ref), true
	}
	return 0, false
}

// udpRcvbufErrors is the Udp RcvbufErrors counter of node's namespace
// (datagrams dropped because a socket's receive buffer was full).
func udpRcvbufErrors(ctx context.Context, l *lab.Lab, node string) (uint64, error) {
	out, err := l.Exec(ctx, node, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	return parseSNMP(out, "Udp", "RcvbufErrors")
}

// parseSNMP returns a counter of /proc/net/snmp (a header line and a value
// line per protocol).
func parseSNMP(b []byte, proto, field string) (uint64, error) {
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(h) == 0 || h[0] != proto+":" || len(v) != len(h) || v[0] != proto+":" {
			continue
		}
		for k := 1; k < len(h); k++ {
			if h[k] == field {
				return strconv.ParseUint(v[k], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("snmp: no %s %s", proto, field)
}

// scaleWindow is how many scale SAs may be half-open at once: the gateway's
// charon answers with COOKIEs and then blocks a peer with more than a few
// half-open IKE_SAs (its DoS protection), so all-at-once stalls.
const scaleWindow = 4

// startScaleSAs starts s1..sN through one VICI session, at most scaleWindow
// half-open at a time (counted from ike-updown events), and returns how many
// came up. An initiation that shows no progress for 5 s is given up.
func startScaleSAs(ctx context.Context, l *lab.Lab, n int, out io.Writer) (int, error) {
	rec, err := l.RecordSAEvents()
	if err != nil {
		return 0, err
	}
	defer rec.Close()
	in, err := l.NewInitiator()
	if err != nil {
		return 0, err
	}
	defer in.Close()
	upCount := func() int {
		seen := map[string]bool{}
		for _, e := range rec.Events() {
			if e.Name == "ike-updown" && e.Up && e.Conn != "lab" {
				seen[e.Conn] = true
			}
		}
		return len(seen)
	}
	next, up, abandoned := 0, 0, 0
	lastProgress := time.Now()
	lastReport := time.Now()
	for {
		if u := upCount(); u != up {
			up, lastProgress = u, time.Now()
		}
		if up >= n || next >= n && (up+abandoned >= n || time.Since(lastProgress) > 5*time.Second) {
			return up, nil
		}
		if time.Since(lastProgress) > 5*time.Second {
			abandoned, lastProgress = next-up, time.Now()
		}
		for next < n && next-up-abandoned < scaleWindow {
			next++
			if err := in.Initiate(ctx, fmt.Sprintf("s%d", next)); err != nil {
				return up, err
			}
		}
		if time.Since(lastReport) > 10*time.Second {
			fmt.Fprintf(out, "   %d of %d SAs up\n", up, n)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return up, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitFailoverReady waits until mobiked reports an operational IPv4 pair
// from each of mn's uplinks, whatever pairs its configuration makes it know.
func waitFailoverReady(ctx context.Context, l *lab.Lab, timeout time.Duration) error {
	c := control.NewClient(l.MobikedSocket())
	deadline := time.Now().Add(timeout)
	for {
		ps, err := c.Paths(ctx)
		ready := map[string]bool{}
		for _, p := range ps {
			if p.State == "operational" {
				ready[p.Local] = true
			}
		}
		if err == nil && ready[lab.MNAddrA.String()] && ready[lab.MNAddrB.String()] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mobiked: no operational pair from both uplinks after %s (%d pairs, %v); see %s", timeout, len(ps), err, l.MobikedLog())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// activePaths returns mobiked's pairs (nil when it does not answer).
func activePaths(ctx context.Context, l *lab.Lab) []control.PathRow {
	ps, _ := control.NewClient(l.MobikedSocket()).Paths(ctx)
	return ps
}

// activeBps is the probe bytes per second of the pairs that carried the SA
// (active) at both samples, over d.
func activeBps(before, after []control.PathRow, d time.Duration) float64 {
	b0 := map[[2]string]control.PathRow{}
	for _, p := range before {
		b0[[2]string{p.Local, p.Remote}] = p
	}
	var bytes uint64
	for _, p := range after {
		if q, ok := b0[[2]string{p.Local, p.Remote}]; ok && p.Active && q.Active && p.BytesSent >= q.BytesSent {
			bytes += p.BytesSent - q.BytesSent
		}
	}
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds()
}

// keepLogs copies the run's mobiked log and both charons' logs into dir (best effort).
func keepLogs(l *lab.Lab, dir, prefix string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	for _, f := range []struct{ src, suffix string }{{l.MobikedLog(), "mobiked.log"}, {l.CharonLog("mn"), "charon-mn.log"}, {l.CharonLog("gw"), "charon-gw.log"}} {
		if b, err := os.ReadFile(f.src); err == nil {
			_ = os.WriteFile(filepath.Join(dir, prefix+"-"+f.suffix), b, 0o644)
		}
	}
}

// machineInfo describes the machine the bench runs on.
func machineInfo(ctx context.Context) Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	m.Charon = "strongSwan (version unknown)"
	if out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "strongswan-charon").Output(); err == nil {
		m.Charon = "strongSwan charon " + strings.TrimSpace(string(out))
	}
	return m
}
