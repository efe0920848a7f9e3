package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// Mode is how a scenario runs: charon alone or charon steered by mobiked.
type Mode string

const (
	ModeCharon  Mode = "charon"
	ModeMobiked Mode = "mobiked"
)

// RunMetrics are the measurements of one run of one scenario in one mode.
type RunMetrics struct {
	OutageS    float64  `json:"outage_s"`    // longest gap between tunnel ping replies after the impairment
	Lost       int      `json:"lost"`        // echo requests without reply sent at or after the impairment
	SASurvived bool     `json:"sa_survived"` // the same IKE SA is established at the end
	Moves      int      `json:"moves"`       // ike-updates of the SA that changed its endpoints
	ConfirmS   *float64 `json:"confirm_s"`   // impairment → first confirming ike-update; null when none
	ProbeBytes uint64   `json:"probe_bytes"` // mobiked's probe bytes during the run
	// ProbeBpsActive is the probe bytes per second of the pair the SA is on,
	// over the lead before the impairment (steady state).
	ProbeBpsActive float64  `json:"probe_bps_active,omitempty"`
	Recovered      bool     `json:"recovered"`          // tunnel replies flow at the end of the run
	Failed         bool     `json:"failed,omitempty"`   // the run could not be measured (see note)
	Path           string   `json:"path,omitempty"`     // uplinks the SA used, e.g. "a>b>a"
	Note           string   `json:"note,omitempty"`     // e.g. "no recovery within 30s"
	Scale          *Scale   `json:"scale,omitempty"`    // the scale scenario only
	Load           string   `json:"loadavg,omitempty"`  // /proc/loadavg at the end of the run
	Profile        string   `json:"profile,omitempty"`  // mobiked config used ("lab" or a file)
	Samples        []sample `json:"-"`                  // for the SVG
	Marks          []mark   `json:"-"`                  // for the SVG
	WindowS        float64  `json:"window_s,omitempty"` // seconds watched after the impairment
	ImpairAtS      float64  `json:"-"`                  // impairment time since the ping started
	Extra          []string `json:"extra_notes,omitempty"`
}

// Scale are the scale scenario's extra results.
type Scale struct {
	SAs        int      `json:"sas"`         // SAs established before the impairment
	Moved      int      `json:"moved"`       // SAs that moved off the impaired uplink
	AllMovedS  *float64 `json:"all_moved_s"` // impairment → last SA moved; null unless all moved
	SetupS     float64  `json:"setup_s"`     // time to establish them
	RSSMB      float64  `json:"rss_mb"`      // mobiked VmRSS at the end
	PeakRSSMB  float64  `json:"peak_rss_mb"` // mobiked VmHWM
	CPUS       float64  `json:"cpu_s"`       // mobiked CPU (user+sys) from the impairment to the end
	CPUTotalS  float64  `json:"cpu_total_s"` // mobiked CPU since it started
	MobikedPID int      `json:"mobiked_pid"` // the process measured
	// MovedP50S and MovedP90S are the impairment → move times of the
	// median and the 90th-percentile SA (of those that moved).
	MovedP50S float64 `json:"moved_p50_s"`
	MovedP90S float64 `json:"moved_p90_s"`
	// Within1500ms counts the SAs moved at most 1.5 s after the impairment.
	Within1500ms int `json:"moved_within_1500ms"`
	// Charon's log after the impairment: exchanges retransmitted on a
	// timer (path probing attempts, retransmits), DPDs started.
	CharonPathProbings int `json:"charon_path_probings"`
	CharonRetransmits  int `json:"charon_retransmits"`
	CharonDPDs         int `json:"charon_dpds"`
	// Where the time goes (seconds after the impairment). SteerS:
	// mobiked's steer request (its share: detection, confirmation and the
	// decision). CharonRoamFirstS/LastS: charon noticing the steered route
	// for its first and last IKE_SA (CharonRoamed of them). Of those,
	// CharonDelayedSAs had an exchange in flight on the dead path (a DPD)
	// that their MOBIKE update waited for; the last of them changed its
	// local address at CharonDelayedMovedS, the last of the others at
	// CharonUndelayedMovedS.
	SteerS                float64 `json:"steer_s"`
	CharonRoamed          int     `json:"charon_roamed"`
	CharonRoamFirstS      float64 `json:"charon_roam_first_s"`
	CharonRoamLastS       float64 `json:"charon_roam_last_s"`
	CharonDelayedSAs      int     `json:"charon_delayed_sas"`
	CharonDelayedMovedS   float64 `json:"charon_delayed_moved_s"`
	CharonUndelayedMovedS float64 `json:"charon_undelayed_moved_s"`
	// UDP datagrams dropped on a full socket receive buffer during the
	// run, in the gateway's and the mobile node's namespaces.
	GWUDPRcvbufErrors uint64 `json:"gw_udp_rcvbuf_errors"`
	MNUDPRcvbufErrors uint64 `json:"mn_udp_rcvbuf_errors"`
}

// moveQuantiles returns the median and 90th percentile of the sorted
// durations ds (seconds) and how many are at most lim.
func moveQuantiles(ds []float64, lim float64) (p50, p90 float64, within int) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	q := func(f float64) float64 { return ds[min(len(ds)-1, int(math.Ceil(f*float64(len(ds))))-1)] }
	for _, d := range ds {
		if d <= lim {
			within++
		}
	}
	return q(0.5), q(0.9), within
}

// ScenarioResult is one scenario in one mode over all runs.
type ScenarioResult struct {
	Name string       `json:"name"`
	Mode Mode         `json:"mode"`
	Runs []RunMetrics `json:"runs"`
}

// Machine describes where the bench ran.
type Machine struct {
	NProc   int    `json:"nproc"`
	Kernel  string `json:"kernel"`
	Charon  string `json:"charon"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg_start"`
}

// Report is the JSON file the bench writes.
type Report struct {
	Machine   Machine          `json:"machine"`
	Command   string           `json:"command"`
	Started   time.Time        `json:"started"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// sample is one tunnel ping: sent at T seconds (relative to the impairment),
// RTT in ms (< 0: lost).
type sample struct{ T, RTT float64 }

// mark is an event on a timeline at T seconds relative to the impairment.
type mark struct {
	T     float64
	Kind  string // impair, restore, move
	Label string
}

// Summary condenses runs: median and worst of each measure.
type Summary struct {
	Runs                     int // measured runs (failed ones excluded)
	Failed                   int
	Recovered                int
	Survived                 int
	OutageMed, OutageWorst   float64
	LostMed, LostWorst       float64
	MovesMed, MovesWorst     float64
	ConfirmMed, ConfirmWorst float64 // NaN when no run confirmed
	Confirmed                int
	ProbeMed                 float64
	ProbeBpsActiveMed        float64 // NaN when no run measured it
}

// median of xs (NaN when empty); xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// worst is the maximum of xs (NaN when empty): larger is worse for every
// measure the bench reports.
func worst(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Max(xs)
}

func summarize(runs []RunMetrics) Summary {
	var s Summary
	var out, lost, moves, conf, probe, bps []float64
	for _, r := range runs {
		if r.Failed {
			s.Failed++
			continue
		}
		s.Runs++
		out = append(out, r.OutageS)
		lost = append(lost, float64(r.Lost))
		moves = append(moves, float64(r.Moves))
		probe = append(probe, float64(r.ProbeBytes))
		if r.ProbeBpsActive > 0 {
			bps = append(bps, r.ProbeBpsActive)
		}
		if r.ConfirmS != nil {
			conf = append(conf, *r.ConfirmS)
			s.Confirmed++
		}
		if r.Recovered {
			s.Recovered++
		}
		if r.SASurvived {
			s.Survived++
		}
	}
	s.OutageMed, s.OutageWorst = median(out), worst(out)
	s.LostMed, s.LostWorst = median(lost), worst(lost)
	s.MovesMed, s.MovesWorst = median(moves), worst(moves)
	s.ConfirmMed, s.ConfirmWorst = median(conf), worst(conf)
	s.ProbeMed = median(probe)
	s.ProbeBpsActiveMed = median(bps)
	return s
}

// outageRatio is mobiked's median outage over charon alone's, defined only
// when every run of both recovered and charon's outage is not zero.
func outageRatio(charon, mobiked Summary) (float64, bool) {
	if charon.Runs == 0 || mobiked.Runs == 0 || charon.Recovered != charon.Runs || mobiked.Recovered != mobiked.Runs {
		return 0, false
	}
	if charon.OutageMed <= 0 {
		return 0, false
	}
	return mobiked.OutageMed / charon.OutageMed, true
}

func fmtS(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtN(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%g", v)
}

// writeTable prints one row per scenario and mode: median/worst over runs and
// the mobiked/charon outage ratio.
func writeTable(w io.Writer, results []ScenarioResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmode\truns\trecovered\toutage s med/worst\tlost med/worst\tSA survived\tmoves med/max\tconfirm s med/worst\tprobe B med\tactive pair B/s\tratio")
	bySc := map[string]map[Mode]Summary{}
	var order []string
	for _, r := range results {
		if bySc[r.Name] == nil {
			bySc[r.Name] = map[Mode]Summary{}
			order = append(order, r.Name)
		}
		bySc[r.Name][r.Mode] = summarize(r.Runs)
	}
	for _, name := range order {
		for _, m := range []Mode{ModeCharon, ModeMobiked} {
			s, ok := bySc[name][m]
			if !ok {
				continue
			}
			ratio := "-"
			if m == ModeMobiked {
				if r, ok := outageRatio(bySc[name][ModeCharon], s); ok {
					ratio = fmt.Sprintf("%.2f", r)
				}
			}
			runs := fmt.Sprint(s.Runs)
			if s.Failed > 0 {
				runs += fmt.Sprintf(" (+%d failed)", s.Failed)
			}
			bps := "-"
			if !math.IsNaN(s.ProbeBpsActiveMed) {
				bps = fmt.Sprintf("%.0f", s.ProbeBpsActiveMed)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s / %s\t%s / %s\t%d/%d\t%s / %s\t%s / %s\t%s\t%s\t%s\n",
				name, m, runs, s.Recovered, s.Runs, fmtS(s.OutageMed), fmtS(s.OutageWorst),
				fmtN(s.LostMed), fmtN(s.LostWorst), s.Survived, s.Runs, fmtN(s.MovesMed), fmtN(s.MovesWorst),
				fmtS(s.ConfirmMed), fmtS(s.ConfirmWorst), fmtN(s.ProbeMed), bps, ratio)
		}
	}
	return tw.Flush()
}

// writeNotes prints per-run notes (non-recovery, scale figures).
func writeNotes(w io.Writer, results []ScenarioResult) {
	for _, r := range results {
		for i, run := range r.Runs {
			var parts []string
			if run.Path != "" {
				parts = append(parts, "path "+run.Path)
			}
			if run.Note != "" {
				parts = append(parts, run.Note)
			}
			parts = append(parts, run.Extra...)
			if run.Load != "" {
				parts = append(parts, "load "+run.Load)
			}
			if sc := run.Scale; sc != nil {
				all := "not all moved"
				if sc.AllMovedS != nil {
					all = fmt.Sprintf("all moved in %.2fs", *sc.AllMovedS)
				}
				p := fmt.Sprintf("%d SAs (setup %.1fs), %d moved, %s (median %.2fs, p90 %.2fs, %d within 1.5s); mobiked steered at %.2fs; charon after the impairment: roamed %d SAs from %.2fs to %.2fs, %d waited for an exchange in flight (last moved %.2fs, the others by %.2fs), %d DPDs, %d retransmits, %d path probings; UDP receive-buffer drops gw %d, mn %d",
					sc.SAs, sc.SetupS, sc.Moved, all, sc.MovedP50S, sc.MovedP90S, sc.Within1500ms, sc.SteerS,
					sc.CharonRoamed, sc.CharonRoamFirstS, sc.CharonRoamLastS, sc.CharonDelayedSAs, sc.CharonDelayedMovedS, sc.CharonUndelayedMovedS,
					sc.CharonDPDs, sc.CharonRetransmits, sc.CharonPathProbings, sc.GWUDPRcvbufErrors, sc.MNUDPRcvbufErrors)
				if sc.MobikedPID > 0 {
					p += fmt.Sprintf(", mobiked RSS %.1f MB (peak %.1f MB), CPU %.2fs during the move (%.2fs total)", sc.RSSMB, sc.PeakRSSMB, sc.CPUS, sc.CPUTotalS)
				}
				parts = append(parts, p)
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "  %s/%s run %d: %s\n", r.Name, r.Mode, i+1, strings.Join(parts, "; "))
			}
		}
	}
}

// writeJSON writes the report, indented.
func writeJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// pingStats measures a tunnel ping against the impairment at ref (since the
// pinger started): the longest time without a reply that overlaps [ref, end]
// (end = the last echo request sent), the requests sent at or after ref that
// got no reply, and whether replies still arrive in the last second.
func pingStats(samples []lab.PingSample, ref time.Duration) (outage time.Duration, lost int, recovered bool) {
	if len(samples) == 0 {
		return 0, 0, false
	}
	end := samples[len(samples)-1].Sent
	var recv []time.Duration
	for _, s := range samples {
		if s.RTT < 0 {
			if s.Sent >= ref {
				lost++
			}
			continue
		}
		recv = append(recv, s.Sent+s.RTT)
		if s.Sent >= end-time.Second {
			recovered = true
		}
	}
	slices.Sort(recv)
	prev := time.Duration(0)
	for _, r := range recv {
		if r <= ref {
			prev = r
			continue
		}
		outage = max(outage, r-prev)
		prev = r
	}
	outage = max(outage, end-prev)
	return outage, lost, recovered
}

// uplinkLabel names an SA's endpoints in the lab: the uplink letter, plus the
// gateway address when it is not the first one.
func uplinkLabel(local, remote string) string {
	l, ok := map[string]string{lab.MNAddrA.String(): "a", lab.MNAddr6A.String(): "a6",
		lab.MNAddrB.String(): "b", lab.MNAddr6B.String(): "b6"}[local]
	if !ok {
		l = local
	}
	r, ok := map[string]string{lab.GWAddr1.String(): "", "": "", lab.GWAddr2.String(): "@gw2",
		lab.GWAddr6_1.String(): "@gw1v6", lab.GWAddr6_2.String(): "@gw2v6"}[remote]
	if !ok {
		r = "@" + remote
	}
	return l + r
}

// saMoves counts conn's ike-updates that changed its endpoints (starting from
// local/remote), the delay from ref to the first such update after ref, and
// the sequence of uplinks the SA used.
func saMoves(evs []lab.SAEvent, conn, local, remote string, ref time.Time) (moves int, confirm *float64, path string) {
	cur := uplinkLabel(local, remote)
	steps := []string{cur}
	for _, e := range evs {
		if e.Name != "ike-update" || e.Conn != conn {
			continue
		}
		if e.Local == local && e.Remote == remote {
			continue
		}
		local, remote = e.Local, e.Remote
		moves++
		if confirm == nil && !e.At.Before(ref) {
			d := e.At.Sub(ref).Seconds()
			confirm = &d
		}
		if lb := uplinkLabel(local, remote); lb != steps[len(steps)-1] {
			steps = append(steps, lb)
		}
	}
	return moves, confirm, strings.Join(steps, ">")
}
