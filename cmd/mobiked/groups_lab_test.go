package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// groupsConfig: two connections to the same gateway with disjoint allowed
// uplinks (lab only on eth0, lab2 only on eth1): one steering group, one
// pair, chosen for lab (listed first). lab2 also knows an address only it
// has (10.7.0.9, unreachable), so that its going away releases something.
// The LAN behind mn (eth2) is excluded.
const groupsConfig = `uplinks:
  - name: eth0
    priority: 300
  - name: eth1
    priority: 200
  - name: eth2
    exclude: true
connections:
  - name: lab
    uplinks: [eth0]
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2"]
    hold_down: 5s
  - name: lab2
    uplinks: [eth1]
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2", 10.7.0.9]
    hold_down: 5s
probes:
  active_interval: 200ms
  standby_interval: 1s
  timeout: 250ms
  loss_threshold: 3
`

// prohibited returns the IPv4 addresses mn prohibits (mobiked's rules).
func prohibited(ctx context.Context, l *lab.Lab) ([]string, error) {
	out, err := l.Exec(ctx, "mn", "ip", "-4", "rule")
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); strings.Contains(line, "prohibit") && len(f) >= 5 && f[3] == "to" {
			addrs = append(addrs, f[4])
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

// bothGateways reports whether both of the gateway's IPv4 addresses are
// prohibited (the gateway unreachable).
func bothGateways(addrs []string) bool {
	return slices.Contains(addrs, lab.GWAddr1.String()) && slices.Contains(addrs, lab.GWAddr2.String())
}

// probeRate measures the probes per second sent on the active pair (from
// mobiked's pair statistics) over d.
func (r *labRig) probeRate(ctx context.Context, d time.Duration) float64 {
	r.t.Helper()
	sent := func() (uint64, time.Time) {
		ps, err := r.c.Paths(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, p := range ps {
			if p.Active && p.Local == lab.MNAddrA.String() && p.Remote == lab.GWAddr1.String() {
				return p.Sent, time.Now()
			}
		}
		r.t.Fatalf("no active pair 10.1.0.2->10.3.0.2: %+v", ps)
		return 0, time.Time{}
	}
	s0, t0 := sent()
	time.Sleep(d)
	s1, t1 := sent()
	return float64(s1-s0) / t1.Sub(t0).Seconds()
}

// connSA waits until charon in mn has an established SA of conn that
// satisfies ok.
func (r *labRig) connSA(ctx context.Context, conn string, timeout time.Duration, what string, ok func(lab.SAInfo) bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last lab.SAInfo
	var lastErr error
	for time.Now().Before(deadline) {
		sa, err := r.l.SAOf(ctx, conn)
		if err == nil && sa.State == "ESTABLISHED" && ok(sa) {
			return
		}
		last, lastErr = sa, err
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("%s %s: not within %s; last %+v %v", conn, what, timeout, last, lastErr)
}

// routing waits until mobiked reports its routing state applied and the
// kernel equal to it, and returns how long that took.
func (r *labRig) routingInSync(ctx context.Context, timeout time.Duration) (control.Routing, time.Duration) {
	r.t.Helper()
	start := time.Now()
	var last control.Routing
	var lastErr error
	for time.Since(start) < timeout {
		rt, err := r.c.Routing(ctx)
		if err == nil && rt.InSync {
			return rt, time.Since(start)
		}
		last, lastErr = rt, err
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("routing not in sync within %s: %+v %v", timeout, last, lastErr)
	return last, 0
}

// TestLabSteeringGroups runs, on one lab with two connections to the
// gateway and a LAN behind mn, everything the desired routing state must
// hold on a real gateway: a policy conflict keeps both tunnels up and never
// prohibits every gateway address; a LAN route of main keeps working for
// traffic from an uplink address; a reload changes the probe rate; a
// blackhole and its failback are counted as path-down and better-path; a
// crash in the middle of a remote move is repaired by the next start; a
// connection that goes away leaves nothing behind.
func TestLabSteeringGroups(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := upRig(t, ctx, "dgrp", groupsConfig, lab.Options{Conns: 2, LAN: true})
	l := r.l
	for _, c := range []string{"lab", "lab2"} {
		if _, err := l.SAOf(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	r.operational(ctx, 15*time.Second, 8)

	// Through the conflict, the blackhole and the failback: never both
	// gateway addresses prohibited.
	var smu sync.Mutex
	samples, bad := 0, []string(nil)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sctx.Err() == nil {
			if addrs, err := prohibited(sctx, l); err == nil {
				smu.Lock()
				samples++
				if bothGateways(addrs) {
					bad = append(bad, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), addrs))
				}
				smu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	t.Run("Conflict", func(t *testing.T) {
		for _, c := range []string{"lab", "lab2"} {
			sa, err := l.SAOf(ctx, c)
			if err != nil || sa.State != "ESTABLISHED" || sa.LocalHost != lab.MNAddrA.String() {
				t.Fatalf("%s: %+v %v (want ESTABLISHED on eth0, the pair chosen for lab)", c, sa, err)
			}
			if res, err := l.PingConn(ctx, c, 30, 10*time.Millisecond); err != nil || res.Received < 27 {
				t.Fatalf("tunnel %s: %+v %v", c, res, err)
			}
		}
		e, err := r.c.Explain(ctx, "lab2")
		if err != nil {
			t.Fatal(err)
		}
		if e.Group != "lab(+1)" || e.Lead != "lab" || !strings.Contains(e.Conflict, "uplink eth0 is not allowed") ||
			!strings.Contains(e.Decision, "policy conflict") {
			t.Fatalf("explain lab2 does not name the conflict: %+v", e)
		}
		if e, err := r.c.Explain(ctx, "lab"); err != nil || e.Conflict != "" {
			t.Fatalf("explain lab: %+v %v", e, err)
		}
		if v, err := l.MobikedMetric(ctx, `mobike_alerts_total{reason="policy-conflict"}`); err != nil || v < 1 {
			t.Fatalf("policy-conflict alerts %v %v", v, err)
		}
	})

	t.Run("LANKeepsWorking", func(t *testing.T) {
		// A reply from mn's uplink address to the LAN host, and traffic
		// sourced from it: main's connected route wins over table 2101.
		if out, err := l.Exec(ctx, "lan", "ping", "-c", "3", "-i", "0.2", "-W", "1", lab.MNAddrA.String()); err != nil {
			t.Fatalf("LAN host -> %s: %v\n%s", lab.MNAddrA, err, out)
		}
		if out, err := l.Exec(ctx, "mn", "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", lab.MNAddrA.String(), lab.LANHost.String()); err != nil {
			t.Fatalf("from %s to the LAN host: %v\n%s", lab.MNAddrA, err, out)
		}
		if out, _ := l.Exec(ctx, "mn", "ip", "route", "get", lab.LANHost.String(), "from", lab.MNAddrA.String()); !strings.Contains(string(out), "dev eth2") {
			t.Fatalf("route get: %s", out)
		}
	})

	t.Run("ReloadChangesProbeRate", func(t *testing.T) {
		// Slower after the reload (a rate measured under load can only
		// fall behind its schedule, so a slowdown is the robust direction),
		// then back.
		before := r.probeRate(ctx, 3*time.Second)
		if err := l.WriteMobikedConfig(strings.Replace(groupsConfig, "active_interval: 200ms", "active_interval: 1s", 1)); err != nil {
			t.Fatal(err)
		}
		if err := l.SignalMobiked(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1200 * time.Millisecond)
		after := r.probeRate(ctx, 4*time.Second)
		t.Logf("active pair: %.1f probes/s at 200 ms, %.1f probes/s after the reload to 1 s", before, after)
		if before < 2.5 || after > 1.3 || after > before/2 {
			t.Fatalf("probe rate %.1f/s before, %.1f/s after the reload", before, after)
		}
		if err := l.WriteMobikedConfig(groupsConfig); err != nil {
			t.Fatal(err)
		}
		if err := l.SignalMobiked(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if back := r.probeRate(ctx, 2*time.Second); back < 2*after {
			t.Fatalf("probe rate %.1f/s after the reload back to 200 ms", back)
		}
	})

	t.Run("BlackholeAndFailbackCauses", func(t *testing.T) {
		r.impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole})
		for _, c := range []string{"lab", "lab2"} {
			r.connSA(ctx, c, 15*time.Second, "off the blackholed uplink", func(s lab.SAInfo) bool { return onUplink(s.LocalHost, "b") })
		}
		for _, c := range []string{"lab", "lab2"} {
			r.connPingOK(ctx, c, "after the failover")
		}
		r.impair(ctx, "a", lab.Impairment{Kind: lab.Restore})
		for _, c := range []string{"lab", "lab2"} {
			r.connSA(ctx, c, 30*time.Second, "back on eth0", func(s lab.SAInfo) bool { return onUplink(s.LocalHost, "a") })
		}
		body, err := l.MobikedMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		get := func(reason string) float64 {
			return lab.SumMetric(string(body), `mobike_steer_total{reason="`+reason+`"}`)
		}
		t.Logf("steers: path-down %v better-path %v sla-breach %v", get("path-down"), get("better-path"), get("sla-breach"))
		if get("path-down") < 1 || get("better-path") < 1 || get("sla-breach") != 0 {
			t.Fatalf("steer causes after a blackhole and a failback:\n%s", grepLines(string(body), "mobike_steer_total{"))
		}
	})

	stopSampling()
	<-sampled
	smu.Lock()
	t.Logf("sampled mn's rules %d times: both gateway addresses prohibited %d times", samples, len(bad))
	if samples < 50 || len(bad) > 0 {
		t.Fatalf("%d samples; both gateway addresses prohibited at %v", samples, bad)
	}
	smu.Unlock()

	t.Run("CrashMidRemoteMove", func(t *testing.T) {
		// The gateway address the group is on now, and the other one.
		sa, err := l.SAOf(ctx, "lab")
		if err != nil {
			t.Fatal(err)
		}
		dead, other, deadPath := lab.GWAddr1.String(), lab.GWAddr2.String(), "gw1"
		if sa.RemoteHost == lab.GWAddr2.String() {
			dead, other, deadPath = other, dead, "gw2"
		}
		// Restart mobiked with the test hook: it kills itself after 3
		// kernel changes, i.e. in the middle of the remote move a blackhole
		// of the gateway address in use forces (route and rule to the other
		// address added, its prohibit lifted, the dead one not prohibited
		// yet: make-before-break leaves the peer reachable).
		if err := l.StopMobiked(); err != nil {
			t.Fatal(err)
		}
		if _, err := l.StartMobikedEnv(ctx, r.bin, groupsConfig, []string{faultHookEnv + "=3"}); err != nil {
			t.Fatal(err)
		}
		r.routingInSync(ctx, 10*time.Second) // adopted: no kernel change yet
		r.operational(ctx, 15*time.Second, 6)
		r.impair(ctx, deadPath, lab.Impairment{Kind: lab.Blackhole})
		deadline := time.Now().Add(15 * time.Second)
		for l.MobikedPID() != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if l.MobikedPID() != 0 {
			t.Fatal("the test hook did not kill mobiked")
		}
		addrs, err := prohibited(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(addrs, dead) || slices.Contains(addrs, other) {
			t.Fatalf("after the crash: prohibited %v, want neither gateway address (a remote move stopped between lifting one prohibit and laying the other)", addrs)
		}
		if out, _ := l.Exec(ctx, "mn", "ip", "-4", "route", "show", "table", "2100"); !strings.Contains(string(out), dead) || !strings.Contains(string(out), other) {
			t.Fatalf("after the crash: table 2100 should route both gateway addresses (half-applied):\n%s", out)
		}
		start := time.Now()
		if _, err := l.StartMobiked(ctx, r.bin, groupsConfig); err != nil {
			t.Fatal(err)
		}
		rt, _ := r.routingInSync(ctx, 10*time.Second)
		repaired := time.Since(start)
		if addrs, _ := prohibited(ctx, l); bothGateways(addrs) || !slices.Contains(addrs, dead) && !slices.Contains(addrs, other) {
			t.Fatalf("not repaired: prohibited %v, routing %+v", addrs, rt)
		}
		// The address is still dead: mobiked moves both SAs to the other;
		// every tunnel answers.
		for _, c := range []string{"lab", "lab2"} {
			r.connSA(ctx, c, 15*time.Second, "on "+other, func(s lab.SAInfo) bool { return s.RemoteHost == other })
		}
		for _, c := range []string{"lab", "lab2"} {
			r.connPingOK(ctx, c, "after the repair")
		}
		answered := time.Since(start)
		t.Logf("crash repair (%s dead): kernel equal to the desired state %.2fs after the restart (mobiked start included); tunnels answer on %s %.2fs after it",
			dead, repaired.Seconds(), other, answered.Seconds())
		r.impair(ctx, deadPath, lab.Impairment{Kind: lab.Restore})
	})

	t.Run("ReleaseOnUnload", func(t *testing.T) {
		if addrs, _ := prohibited(ctx, l); !slices.Contains(addrs, "10.7.0.9") {
			t.Fatalf("lab2's own address not prohibited before: %v", addrs)
		}
		start := time.Now()
		if err := l.LoadConns(ctx, 1); err != nil { // terminate lab2, load the config without it
			t.Fatal(err)
		}
		deadline := start.Add(35 * time.Second)
		for {
			rt, err := r.c.Routing(ctx)
			if err == nil && rt.InSync && !strings.Contains(strings.Join(rt.Kernel, "\n"), "10.7.0.9") &&
				len(rt.Desired) > 0 && !strings.Contains(strings.Join(rt.Desired, "\n"), "lab2") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lab2's entries not released within 35 s: %+v %v", rt, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		released := time.Since(start)
		// Nothing of mobiked's in mn mentions lab2's address any more, and
		// the tunnel of lab still answers.
		for _, cmd := range [][]string{{"ip", "-4", "rule"}, {"ip", "-4", "route", "show", "table", "all"}} {
			if out, _ := l.Exec(ctx, "mn", cmd...); strings.Contains(string(out), "10.7.0.9") {
				t.Fatalf("%s still has lab2's address:\n%s", strings.Join(cmd, " "), out)
			}
		}
		r.pingOK(ctx, "after lab2 went away")
		t.Logf("release: lab2's entries gone %.1fs after terminate + load-conns without it (the connection list is re-read every 30 s)", released.Seconds())
	})
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
