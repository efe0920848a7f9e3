package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/monitor/probe"
)

// metricsLabReflector is where the lab's mobiked runs its STAMP reflector (mn).
const metricsLabReflector = "127.0.0.1:8620"

// scrape GETs mobiked's /metrics inside mn.
func scrape(ctx context.Context, l *lab.Lab) ([]byte, error) { return l.MobikedMetrics(ctx) }

type families map[string]*dto.MetricFamily

func parseScrape(t *testing.T, body []byte) families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return mf
}

// value returns the value of the sample of name whose labels include want,
// and whether there is one.
func (f families) value(name string, want map[string]string) (float64, bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.Metric {
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// sum adds every sample of name.
func (f families) sum(name string) float64 {
	var s float64
	if fam := f[name]; fam != nil {
		for _, m := range fam.Metric {
			s += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return s
}

// count counts the samples of name whose value satisfies ok.
func (f families) count(name string, ok func(float64) bool) int {
	n := 0
	if fam := f[name]; fam != nil {
		for _, m := range fam.Metric {
			if ok(m.GetGauge().GetValue()) {
				n++
			}
		}
	}
	return n
}

// lines returns the scrape's lines that start with one of the prefixes.
func lines(body []byte, prefixes ...string) string {
	var out []string
	for _, ln := range strings.Split(string(body), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(ln, p) {
				out = append(out, ln)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestLabMetrics scrapes a real mobiked next to a real charon: the metrics of
// issue 7 are there with sane values, pass promlint, and a blackhole failover
// shows up as a failover observation, a steer and the SA's new uplink. The
// daemon also runs its STAMP reflector, which answers inside mn. Then,
// restarted with --web.config.file and --log-format json, its listener
// enforces TLS and basic auth and its log is JSON lines (WebConfigAndJSONLog).
func TestLabMetrics(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const name = "mxmet"
	config := lab.LabMobikedConfig + "reflector:\n  listen: \"" + metricsLabReflector + "\"\n"
	r := upRig(t, ctx, name, config, lab.Options{})
	l, c := r.l, r.c
	waitStatus(t, ctx, c, 10*time.Second, func(r control.SARow) bool { return r.Uplink == "eth0" })
	waitPaths(t, ctx, c, 10*time.Second, 4)

	// Wait for a publish tick (1 s) that saw the tested pairs.
	var before families
	var body []byte
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err = scrape(ctx, l)
		if err == nil {
			before = parseScrape(t, body)
			if before.count("mobike_path_up", func(v float64) bool { return v == 1 }) >= 4 &&
				before.count("mobike_path_rtt_seconds", func(v float64) bool { return v > 0 }) >= 4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scrape with 4 usable, measured paths: %v\n%s", err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if v, ok := before.value("mobike_vici_up", nil); !ok || v != 1 {
		t.Errorf("mobike_vici_up = %v (present %v), want 1", v, ok)
	}
	if v, ok := before.value("mobike_build_info", map[string]string{"goversion": runtime.Version()}); !ok || v != 1 {
		t.Errorf("mobike_build_info{goversion=%q} = %v (present %v), want 1:\n%s", runtime.Version(), v, ok, lines(body, "mobike_build_info"))
	}
	if n := before.count("mobike_path_rtt_seconds", func(v float64) bool { return v > 0 && v < 1 }); n < 4 {
		t.Errorf("%d paths with an RTT in (0, 1 s), want at least 4:\n%s", n, lines(body, "mobike_path_rtt_seconds"))
	}
	if v, ok := before.value("mobike_sa_uplink_info", map[string]string{"conn": "lab", "uplink": "eth0"}); !ok || v != 1 {
		t.Errorf("mobike_sa_uplink_info{conn=lab,uplink=eth0} = %v (present %v), want 1", v, ok)
	}
	if v, ok := before.value("mobike_conn_on_preferred_uplink", map[string]string{"conn": "lab"}); !ok || v != 1 {
		t.Errorf("mobike_conn_on_preferred_uplink{conn=lab} = %v (present %v), want 1", v, ok)
	}
	for _, up := range []string{"eth0", "eth1"} {
		sent, _ := before.value("mobike_probe_sent_total", map[string]string{"uplink": up})
		lost, _ := before.value("mobike_probe_lost_total", map[string]string{"uplink": up})
		octets, _ := before.value("mobike_probe_bytes_total", map[string]string{"uplink": up})
		// ICMP echo probes: IP + ICMP headers + payload, at least 28 octets each.
		if sent < 4 || lost > sent || octets < 28*sent {
			t.Errorf("probe counters of %s: sent %v lost %v bytes %v", up, sent, lost, octets)
		}
	}
	if v := before.sum("mobike_netlink_events_total"); v < 1 {
		t.Errorf("mobike_netlink_events_total = %v, want at least the initial state", v)
	}

	// The lab's charon keeps ESP in user space (kernel-libipsec) and this
	// kernel has no ESP: the SA's counters come from charon, after the
	// kernel said it has no XFRM state for them.
	deadline = time.Now().Add(5 * time.Second)
	for {
		log, _ := os.ReadFile(l.MobikedLog())
		var traffic []string
		found := false
		for _, ln := range strings.Split(string(log), "\n") {
			if strings.Contains(ln, "traffic") {
				traffic = append(traffic, ln)
				found = found || strings.Contains(ln, `msg="traffic counters from charon"`) &&
					strings.Contains(ln, "sa=lab#") && strings.Contains(ln, "no XFRM state")
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no fallback to charon's counters in mobiked's log:\n%s", strings.Join(traffic, "\n"))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The reflector of the config answers STAMP inside mn.
	if err := stampPing(l); err != nil {
		t.Errorf("stamp reflector at %s in mn: %v", metricsLabReflector, err)
	}

	// Blackhole uplink a: the SA moves to b and the metrics say so.
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WaitSA(ctx, 20*time.Second, func(s lab.SAInfo) bool { return s.LocalHost == lab.MNAddrB.String() }); err != nil {
		t.Fatalf("SA did not move to uplink b: %v", err)
	}
	var after families
	deadline = time.Now().Add(5 * time.Second)
	for {
		body, err = scrape(ctx, l)
		if err == nil {
			after = parseScrape(t, body)
			if v, _ := after.value("mobike_sa_uplink_info", map[string]string{"conn": "lab", "uplink": "eth1"}); v == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mobike_sa_uplink_info never named eth1: %v\n%s", err, lines(body, "mobike_sa_uplink_info"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("scrape after failover:\n%s", lines(body, "mobike_failover_duration_seconds_count", "mobike_failover_duration_seconds_sum",
		"mobike_steer_total", "mobike_sa_uplink_info", "mobike_path_up", "mobike_probe_", "mobike_conn_", "mobike_vici_up", "mobike_netlink"))
	if _, ok := after.value("mobike_sa_uplink_info", map[string]string{"conn": "lab", "uplink": "eth0"}); ok {
		t.Errorf("mobike_sa_uplink_info still names eth0:\n%s", lines(body, "mobike_sa_uplink_info"))
	}
	n0, _ := before.value("mobike_failover_duration_seconds", nil)
	n1, _ := after.value("mobike_failover_duration_seconds", nil)
	if n1 <= n0 {
		t.Errorf("mobike_failover_duration_seconds_count %v -> %v, want an increase", n0, n1)
	}
	if s := after.f("mobike_failover_duration_seconds").GetHistogram().GetSampleSum(); s <= 0 || s > 20 {
		t.Errorf("failover duration sum %v s, want in (0, 20]", s)
	}
	if s0, s1 := before.sum("mobike_steer_total"), after.sum("mobike_steer_total"); s1 <= s0 {
		t.Errorf("mobike_steer_total %v -> %v, want an increase", s0, s1)
	}
	// The pair the SA was on is down (standby pairs, probed every second,
	// may still be on their way down).
	if v, ok := after.value("mobike_path_up", map[string]string{"uplink": "eth0", "family": "ipv4", "peer": "0"}); !ok || v != 0 {
		t.Errorf("the blackholed SA pair is not down:\n%s", lines(body, "mobike_path_up"))
	}
	l0, _ := before.value("mobike_probe_lost_total", map[string]string{"uplink": "eth0"})
	l1, _ := after.value("mobike_probe_lost_total", map[string]string{"uplink": "eth0"})
	if l1 < l0+3 {
		t.Errorf("mobike_probe_lost_total{uplink=eth0} %v -> %v, want the blackhole's losses (loss_threshold 3)", l0, l1)
	}
	if v, ok := after.value("mobike_vici_up", nil); !ok || v != 1 {
		t.Errorf("mobike_vici_up = %v after failover, want 1", v)
	}

	// The same lab, mobiked restarted with --web.config.file and --log-format json.
	t.Run("WebConfigAndJSONLog", func(t *testing.T) { testWebConfigAndJSONLog(t, ctx, r) })
}

func (f families) f(name string) *dto.Metric {
	if fam := f[name]; fam != nil && len(fam.Metric) > 0 {
		return fam.Metric[0]
	}
	return &dto.Metric{}
}

// stampPing sends one unauthenticated STAMP request to the reflector inside
// mn and checks the reply echoes it.
func stampPing(l *lab.Lab) error {
	var c net.Conn
	err := lab.InNetNS(l.NS("mn"), func() error {
		var err error
		c, err = net.Dial("udp", metricsLabReflector)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	req, err := probe.AppendSender(nil, &probe.SenderPacket{Seq: 42, Timestamp: probe.NTPFromTime(time.Now())}, probe.STAMPUnauthenticated, nil)
	if err != nil {
		return err
	}
	if _, err := c.Write(req); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	rp, err := probe.DecodeReflector(buf[:n], probe.STAMPUnauthenticated, nil)
	if err != nil {
		return err
	}
	if rp.SenderSeq != 42 {
		return fmt.Errorf("reply echoes seq %d, want 42", rp.SenderSeq)
	}
	return nil
}

// TestLabIKEProbeMethod: with `probe: ike` the daemon tests the lab
// connection's pairs with IKE_SA_INIT exchanges answered by the gateway's
// charon: the pairs become operational with measured RTTs and the NAT
// verdict of the response's NAT-D payloads, and the SA stays where it is.
func TestLabIKEProbeMethod(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name = "mxike"
	config := strings.Replace(lab.LabMobikedConfig, "  - name: lab\n", "  - name: lab\n    probe: ike\n", 1)
	if config == lab.LabMobikedConfig {
		t.Fatal("lab config has no `- name: lab` entry to set the probe method on")
	}
	r := upRig(t, ctx, name, config, lab.Options{})
	l, c := r.l, r.c
	waitStatus(t, ctx, c, 10*time.Second, func(r control.SARow) bool { return r.Uplink == "eth0" })
	var rows []control.PathRow
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for {
		rows, err = c.Paths(ctx)
		ok := 0
		for _, p := range rows {
			if p.Method == "ike" && p.State == "operational" && p.Received > 0 && p.RTTms > 0 && strings.HasPrefix(p.Local, "10.") {
				ok++
			}
		}
		if err == nil && ok >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 4 IPv4 pairs operational by IKE probes: %v\n%+v", err, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range rows {
		if strings.HasPrefix(p.Local, "10.") {
			t.Logf("%s -> %s %s %s rtt %.3f ms nat %s sent %d received %d", p.Local, p.Remote, p.Method, p.State, p.RTTms, p.NAT, p.Sent, p.Received)
			// The NAT-D payloads of the response give a verdict (ICMP cannot).
			if p.NAT != "none" || p.Method != "ike" {
				t.Errorf("pair %s -> %s: method %s nat %s, want ike with verdict none (the lab has no NAT)", p.Local, p.Remote, p.Method, p.NAT)
			}
		}
	}
	if sa, err := l.SA(ctx); err != nil || sa.LocalHost != lab.MNAddrA.String() {
		t.Fatalf("SA %+v, %v; want it still on uplink a", sa, err)
	}
	checkDropIKEDetected(t, ctx, r)
}
