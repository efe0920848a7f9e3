package main

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (run with -update if intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestMedianWorst(t *testing.T) {
	tests := []struct {
		name        string
		in          []float64
		med, worstV float64
	}{
		{"empty", nil, math.NaN(), math.NaN()},
		{"one", []float64{3}, 3, 3},
		{"odd unsorted", []float64{5, 1, 3}, 3, 5},
		{"even averages middle two", []float64{4, 1, 2, 10}, 3, 10},
		{"duplicates", []float64{2, 2, 2, 9}, 2, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := median(tc.in); !same(got, tc.med) {
				t.Errorf("median %v = %v, want %v", tc.in, got, tc.med)
			}
			if got := worst(tc.in); !same(got, tc.worstV) {
				t.Errorf("worst %v = %v, want %v", tc.in, got, tc.worstV)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median modified its input: %v", tc.in)
				}
			}
		})
	}
}

func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func ptr(v float64) *float64 { return &v }

func TestSummarizeAndRatio(t *testing.T) {
	charon := summarize([]RunMetrics{
		{OutageS: 2, Lost: 200, Recovered: true, SASurvived: true, Moves: 1, ConfirmS: ptr(1.9)},
		{OutageS: 4, Lost: 400, Recovered: true, SASurvived: true, Moves: 1, ConfirmS: ptr(3.9)},
		{OutageS: 3, Lost: 300, Recovered: true, Moves: 2},
	})
	if charon.OutageMed != 3 || charon.OutageWorst != 4 || charon.LostMed != 300 || charon.LostWorst != 400 {
		t.Fatalf("charon summary %+v", charon)
	}
	if charon.Confirmed != 2 || charon.ConfirmMed != 2.9 || charon.ConfirmWorst != 3.9 || charon.Survived != 2 || charon.MovesWorst != 2 {
		t.Fatalf("charon summary %+v", charon)
	}
	mob := summarize([]RunMetrics{{OutageS: 0.6, Recovered: true}, {OutageS: 0.9, Recovered: true}, {Failed: true, Note: "run failed"}})
	if mob.Runs != 2 || mob.Failed != 1 || mob.OutageWorst != 0.9 {
		t.Fatalf("failed run not excluded: %+v", mob)
	}
	r, ok := outageRatio(charon, mob)
	if !ok || math.Abs(r-0.75/3) > 1e-9 {
		t.Fatalf("ratio %v %v, want 0.25", r, ok)
	}
	// No ratio when charon alone did not recover in every run.
	stuck := summarize([]RunMetrics{{OutageS: 30, Recovered: false}, {OutageS: 2, Recovered: true}})
	if _, ok := outageRatio(stuck, mob); ok {
		t.Fatal("ratio defined although charon alone did not recover")
	}
	if _, ok := outageRatio(Summary{}, mob); ok {
		t.Fatal("ratio defined without charon runs")
	}
}

// pings builds 10 ms samples: lost marks which indexes got no reply.
func pings(n int, rtt time.Duration, lost func(i int) bool) []lab.PingSample {
	out := make([]lab.PingSample, n)
	for i := range out {
		out[i] = lab.PingSample{Sent: time.Duration(i) * 10 * time.Millisecond, RTT: rtt}
		if lost(i) {
			out[i].RTT = -1
		}
	}
	return out
}

func TestPingStats(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		samples   []lab.PingSample
		ref       time.Duration
		outage    time.Duration
		lost      int
		recovered bool
	}{
		{"clean", pings(300, ms, func(int) bool { return false }), time.Second, 10 * ms, 0, true},
		// Requests 100..149 lost: replies at 0.991 s then 1.501 s.
		{"gap after ref", pings(300, ms, func(i int) bool { return i >= 100 && i < 150 }), time.Second, 510 * ms, 50, true},
		// Losses before ref do not count, the gap crossing ref does.
		{"gap across ref", pings(300, ms, func(i int) bool { return i >= 80 && i < 120 }), time.Second, 410 * ms, 20, true},
		{"no recovery", pings(300, ms, func(i int) bool { return i >= 100 }), time.Second, 2990*ms - 991*ms, 200, false},
		{"empty", nil, time.Second, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, l, r := pingStats(tc.samples, tc.ref)
			if o != tc.outage || l != tc.lost || r != tc.recovered {
				t.Fatalf("pingStats = %v, %d, %v; want %v, %d, %v", o, l, r, tc.outage, tc.lost, tc.recovered)
			}
		})
	}
}

func TestSAMoves(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	a, b, g1, g2 := lab.MNAddrA.String(), lab.MNAddrB.String(), lab.GWAddr1.String(), lab.GWAddr2.String()
	evs := []lab.SAEvent{
		{At: at(-500), Name: "ike-update", Conn: "lab", Local: a, Remote: g1}, // no change (NAT port update)
		{At: at(-100), Name: "ike-update", Conn: "lab", Local: b, Remote: g1}, // before ref: counts, no confirm
		{At: at(50), Name: "ike-update", Conn: "other", Local: a, Remote: g2}, // other conn
		{At: at(300), Name: "ike-updown", Conn: "lab", Local: a, Remote: g1},  // not an update
		{At: at(700), Name: "ike-update", Conn: "lab", Local: a, Remote: g1},  // confirm
		{At: at(900), Name: "ike-update", Conn: "lab", Local: a, Remote: g2},  // gateway change
		{At: at(950), Name: "ike-update", Conn: "lab", Local: "fd00:2::2", Remote: "fd00:4::2"},
	}
	moves, confirm, path := saMoves(evs, "lab", a, g1, t0)
	if moves != 4 || confirm == nil || math.Abs(*confirm-0.7) > 1e-9 || path != "a>b>a>a@gw2>b6@gw2v6" {
		t.Fatalf("saMoves = %d, %v, %q", moves, confirm, path)
	}
	if m, c, p := saMoves(nil, "lab", a, g1, t0); m != 0 || c != nil || p != "a" {
		t.Fatalf("saMoves(nil) = %d, %v, %q", m, c, p)
	}
}

// sampleReport is a fixed report for the golden tests.
func sampleReport() Report {
	return Report{
		Machine: Machine{NProc: 2, Kernel: "6.1.0", Charon: "strongSwan charon 5.9.8", Go: "go1.26", LoadAvg: "1.00 1.00 1.00"},
		Command: "mobike-lab bench --runs 2",
		Started: time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC),
		Scenarios: []ScenarioResult{
			{Name: "blackhole", Mode: ModeCharon, Runs: []RunMetrics{
				{OutageS: 30, Lost: 3000, SASurvived: true, Note: "no recovery within 30 s", Path: "a", WindowS: 30},
				{OutageS: 30, Lost: 2990, SASurvived: true, Note: "no recovery within 30 s", Path: "a", WindowS: 30},
			}},
			{Name: "blackhole", Mode: ModeMobiked, Runs: []RunMetrics{
				{OutageS: 0.8, Lost: 75, SASurvived: true, Moves: 1, ConfirmS: ptr(0.71), ProbeBytes: 4200, ProbeBpsActive: 220, Recovered: true, Path: "a>b", Profile: "lab", Load: "0.50 0.40 0.30"},
				{OutageS: 0.9, Lost: 85, SASurvived: true, Moves: 1, ConfirmS: ptr(0.81), ProbeBytes: 4400, ProbeBpsActive: 224, Recovered: true, Path: "a>b", Profile: "lab", Load: "1.50 0.40 0.30"},
			}},
			{Name: "linkdown", Mode: ModeCharon, Runs: []RunMetrics{{OutageS: 0.2, Lost: 15, SASurvived: true, Moves: 1, ConfirmS: ptr(0.12), Recovered: true}}},
			{Name: "linkdown", Mode: ModeMobiked, Runs: []RunMetrics{{OutageS: 0.1, Lost: 9, SASurvived: true, Moves: 1, ConfirmS: ptr(0.1), ProbeBytes: 800, Recovered: true},
				{Failed: true, Note: "run failed: lab up: boom"}}},
			{Name: "scale", Mode: ModeMobiked, Runs: []RunMetrics{{OutageS: 1, Lost: 90, SASurvived: true, Moves: 1, ConfirmS: ptr(0.9), Recovered: true,
				Scale: &Scale{SAs: 1000, Moved: 1001, AllMovedS: ptr(1.4), SetupS: 60, RSSMB: 40, PeakRSSMB: 45, CPUS: 0.5, CPUTotalS: 3, MobikedPID: 1234}}}},
		},
	}
}

func TestReportJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	golden(t, "bench_report.golden.json", b.Bytes())
	// The fields the issue asks for are there, confirm_s null when unconfirmed.
	s := b.String()
	for _, k := range []string{`"machine"`, `"scenarios"`, `"name": "blackhole"`, `"mode": "charon"`, `"runs"`, `"outage_s"`, `"lost"`,
		`"sa_survived"`, `"moves"`, `"confirm_s": null`, `"confirm_s": 0.71`, `"probe_bytes"`, `"all_moved_s": 1.4`,
		`"probe_bps_active": 220`, `"loadavg": "1.50 0.40 0.30"`} {
		if !strings.Contains(s, k) {
			t.Errorf("JSON lacks %s", k)
		}
	}
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, sampleReport().Scenarios); err != nil {
		t.Fatal(err)
	}
	writeNotes(&b, sampleReport().Scenarios)
	golden(t, "bench_table.golden.txt", b.Bytes())
	// linkdown mobiked 0.1 vs charon 0.2: ratio 0.50; blackhole has none.
	for _, line := range strings.Split(b.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if f[0] == "linkdown" && f[1] == "mobiked" && f[len(f)-1] != "0.50" {
			t.Errorf("linkdown ratio: %q", line)
		}
		if f[0] == "blackhole" && f[1] == "mobiked" && (f[len(f)-1] != "-" || f[len(f)-2] != "222") {
			t.Errorf("blackhole must have no ratio and the active pair's median probe rate 222 B/s: %q", line)
		}
	}
}

func TestBenchBadInput(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"bench", "--scenario", "nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"bench", "--runs", "0"}, "--runs must be at least 1"},
		{[]string{"bench", "--modes", "both"}, `unknown mode "both"`},
		{[]string{"bench", "--profile", "fast"}, `unknown profile "fast"`},
		{[]string{"bench", "--profile", "defaults", "--mobiked-config", "x.yaml"}, "drop --mobiked-config"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.wantErr)
		}
	}
}
