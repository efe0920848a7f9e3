package metrics

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mobiked/mobiked/mobike"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// testSnapshot exercises every state metric, including the edge cases: an
// unknown state, a duplicate pair, an RTT not yet known, SAs without uplink.
func testSnapshot() Snapshot {
	return Snapshot{
		VICIUp: true,
		Paths: []Path{
			{Uplink: "eth0", Conn: "office", Peer: 0, Family: "ipv4", State: "operational", RTT: 0.012, Loss: 0},
			{Uplink: "wwan0", Conn: "office", Peer: 0, Family: "ipv4", State: "degraded", RTT: 0.085, Loss: 0.15},
			{Uplink: "wwan0", Conn: "office", Peer: 1, Family: "ipv6", State: "testing", RTT: math.NaN(), Loss: 0},
			{Uplink: "eth0", Conn: "office", Peer: 1, Family: "ipv6", State: "exploded", RTT: math.NaN(), Loss: 1},
			{Uplink: "eth0", Conn: "office", Peer: 0, Family: "ipv4", State: "down", RTT: 9, Loss: 1}, // duplicate: dropped
		},
		SAs: []SA{
			{Conn: "office", Uplink: "eth0"},
			{Conn: "office", Uplink: "eth0"},
			{Conn: "office", Uplink: "wwan0"},
			{Conn: "roadwarrior", Uplink: ""},
		},
		Conns: []Conn{
			{Name: "office", Preferred: "eth0", Current: "eth0"},
			{Name: "branch", Preferred: "eth0", Current: "wwan0"},
			{Name: "lab", Preferred: "", Current: ""},
		},
	}
}

// exposition renders a registry in the text format.
func exposition(t testing.TB, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func newTest(t testing.TB, snap Snapshot) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, SourceFunc(func() Snapshot { return snap }), Options{
		Build:    BuildInfo{Version: "0.1.0", Revision: "abc123", GoVersion: "go1.26.8"},
		RoamArms: func() uint64 { return 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

// observeAll records one of every event.
func observeAll(m *Metrics) {
	m.ObserveSteer(mobike.SteerPathDown)
	m.ObserveSteer(mobike.SteerBetterPath)
	m.ObserveSteer(mobike.SteerBetterPath)
	m.ObserveSteerFailure(mobike.FailUnconfirmed)
	m.ObserveAlert(mobike.AlertPolicyConflict)
	m.ObserveFailover(80 * time.Millisecond)
	m.ObserveFailover(1500 * time.Millisecond)
	m.ObserveNetlinkEvent()
	m.ObserveNetlinkEvent()
	m.ObserveProbe("eth0", 64, false)
	m.ObserveProbe("eth0", 64, false)
	m.ObserveProbe("wwan0", 48, true)
}

// TestScrapeGolden compares the whole exposition with testdata/scrape.golden.
func TestScrapeGolden(t *testing.T) {
	reg, m := newTest(t, testSnapshot())
	observeAll(m)
	got := exposition(t, reg)
	const golden = "testdata/scrape.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("scrape differs from %s (run with -update after checking):\n%s", golden, got)
	}
	// The golden is also a valid exposition for GatherAndCompare.
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestPromlint(t *testing.T) {
	reg, m := newTest(t, testSnapshot())
	observeAll(m)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestCatalogMatchesExposition checks that Catalog (used by the docs and the
// deploy tests) lists exactly what a populated registry exports, with the
// same type and label names.
func TestCatalogMatchesExposition(t *testing.T) {
	reg, m := newTest(t, testSnapshot())
	observeAll(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		got[mf.GetName()] = strings.ToLower(mf.GetType().String()) + fmt.Sprint(labels)
	}
	for _, c := range Catalog() {
		labels := slices.Sorted(slices.Values(c.Labels))
		if want := c.Type + fmt.Sprint(labels); got[c.Name] != want {
			t.Errorf("%s: exported %q, catalog says %q", c.Name, got[c.Name], want)
		}
		if !strings.HasPrefix(c.Name, "mobike_") || (c.Type == "counter") != strings.HasSuffix(c.Name, "_total") {
			t.Errorf("%s: bad name for a %s", c.Name, c.Type)
		}
		delete(got, c.Name)
	}
	for name := range got {
		t.Errorf("%s is exported but not in Catalog", name)
	}
}

// TestClosedLabelSets: every label value comes from a closed set, and the
// reason sets are exactly the core's cause enums (each of which the core
// produces: TestEveryCauseOccurs in mobike/sim), so no series can sit at 0
// for a value that never occurs.
func TestClosedLabelSets(t *testing.T) {
	reg, m := newTest(t, testSnapshot())
	observeAll(m)
	reasons := map[string][]string{
		"mobike_steer_total":          SteerReasons(),
		"mobike_steer_failures_total": FailureReasons(),
		"mobike_alerts_total":         AlertReasons(),
	}
	for name, set := range reasons {
		if len(set) == 0 || slices.Contains(set, "none") || slices.Contains(set, "other") {
			t.Errorf("%s: reason set %v", name, set)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if set, ok := reasons[mf.GetName()]; ok && len(mf.GetMetric()) != len(set) {
			t.Errorf("%s: %d series, want one per reason (%d)", mf.GetName(), len(mf.GetMetric()), len(set))
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				v := l.GetValue()
				if _, err := netip.ParseAddr(v); err == nil {
					t.Errorf("%s has an address as label %s=%q", mf.GetName(), l.GetName(), v)
				}
				switch l.GetName() {
				case "reason":
					if !slices.Contains(reasons[mf.GetName()], v) {
						t.Errorf("%s: reason %q outside the closed set", mf.GetName(), v)
					}
				case "state":
					if !slices.Contains(PathStates, v) {
						t.Errorf("%s: state %q outside PathStates", mf.GetName(), v)
					}
				case "family":
					if !slices.Contains(Families, v) {
						t.Errorf("%s: family %q outside Families", mf.GetName(), v)
					}
				}
			}
		}
	}
}

func TestStateValues(t *testing.T) {
	reg, _ := newTest(t, testSnapshot())
	tests := []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"mobike_path_up", map[string]string{"uplink": "eth0", "peer": "0"}, 1},  // first of the duplicates wins
		{"mobike_path_up", map[string]string{"uplink": "wwan0", "peer": "0"}, 1}, // degraded is up
		{"mobike_path_up", map[string]string{"uplink": "wwan0", "peer": "1"}, 0}, // testing is not
		{"mobike_path_state", map[string]string{"uplink": "eth0", "peer": "1", "state": "unknown"}, 1},
		{"mobike_path_state", map[string]string{"uplink": "eth0", "peer": "0", "state": "down"}, 0},
		{"mobike_path_rtt_seconds", map[string]string{"uplink": "wwan0", "peer": "0"}, 0.085},
		{"mobike_path_loss_ratio", map[string]string{"uplink": "wwan0", "peer": "0"}, 0.15},
		{"mobike_sa_uplink_info", map[string]string{"conn": "office", "uplink": "eth0"}, 1}, // an _info gauge is 1
		{"mobike_sas", map[string]string{"conn": "office", "uplink": "eth0"}, 2},
		{"mobike_sa_uplink_info", map[string]string{"conn": "roadwarrior", "uplink": "none"}, 1},
		{"mobike_conn_on_preferred_uplink", map[string]string{"conn": "office"}, 1},
		{"mobike_conn_on_preferred_uplink", map[string]string{"conn": "branch"}, 0},
		{"mobike_conn_on_preferred_uplink", map[string]string{"conn": "lab"}, 0},
		{"mobike_vici_up", nil, 1},
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		found := 0
		for _, mf := range mfs {
			if mf.GetName() != tc.metric {
				continue
			}
		metrics:
			for _, metric := range mf.GetMetric() {
				for _, l := range metric.GetLabel() {
					if want, ok := tc.labels[l.GetName()]; ok && want != l.GetValue() {
						continue metrics
					}
				}
				found++
				if got := metric.GetGauge().GetValue(); got != tc.want {
					t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s%v matched %d series, want 1", tc.metric, tc.labels, found)
		}
	}
	// An unknown RTT exports no rtt series.
	if n := countSeries(t, reg, "mobike_path_rtt_seconds"); n != 2 {
		t.Errorf("rtt series = %d, want 2 (NaN RTTs skipped)", n)
	}
}

func countSeries(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	n, err := testutil.GatherAndCount(g, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestForgetUplink(t *testing.T) {
	reg, m := newTest(t, Snapshot{})
	m.ObserveProbe("wwan0", 48, true)
	m.ObserveProbe("eth0", 48, false)
	m.ForgetUplink("wwan0")
	for _, name := range []string{"mobike_probe_sent_total", "mobike_probe_lost_total", "mobike_probe_bytes_total"} {
		if n := countSeries(t, reg, name); n != 1 {
			t.Errorf("%s: %d series after ForgetUplink, want 1", name, n)
		}
	}
}

// TestInjectedRegistry checks that New touches only the registry it is given:
// two instances coexist, and the default registry stays clean.
func TestInjectedRegistry(t *testing.T) {
	newTest(t, Snapshot{})
	newTest(t, Snapshot{})
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "mobike_") {
			t.Errorf("%s registered on the default registry", mf.GetName())
		}
	}
	// Registering twice on one registry is an error, not a panic.
	reg := prometheus.NewRegistry()
	src := SourceFunc(func() Snapshot { return Snapshot{} })
	if _, err := New(reg, src, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, src, Options{}); err == nil {
		t.Error("second New on the same registry succeeded")
	}
}

func TestHandler(t *testing.T) {
	reg, _ := newTest(t, testSnapshot())
	var healthErr error
	srv := httptest.NewServer(Handler(reg, func() error { return healthErr }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	healthErr = fmt.Errorf("runloop stalled")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "runloop stalled") {
		t.Errorf("/healthz unhealthy = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "mobike_vici_up 1") {
		t.Errorf("/metrics = %d, body lacks mobike_vici_up 1", code)
	}
}

// BenchmarkCollect10kSAs measures a scrape with 10 000 SAs over 50
// connections and 3 uplinks (150 mobike_sa_uplink_info series).
func BenchmarkCollect10kSAs(b *testing.B) {
	snap := Snapshot{VICIUp: true}
	uplinks := []string{"eth0", "wlan0", "wwan0"}
	for i := range 10000 {
		snap.SAs = append(snap.SAs, SA{Conn: fmt.Sprintf("conn%02d", i%50), Uplink: uplinks[i%3]})
	}
	for c := range 50 {
		for u, up := range uplinks {
			snap.Paths = append(snap.Paths, Path{Uplink: up, Conn: fmt.Sprintf("conn%02d", c), Peer: u, Family: "ipv4", State: "operational", RTT: 0.01})
		}
	}
	reg, _ := newTest(b, snap)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
