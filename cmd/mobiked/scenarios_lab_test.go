package main

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/monitor/probe"
)

const (
	gwAddr1 = "10.3.0.2"
	gwAddr2 = "10.4.0.2"
	mnAddrA = "10.1.0.2"
	mnAddrB = "10.2.0.2"
)

func onLocal(a string) func(control.SARow) bool {
	return func(r control.SARow) bool { return strings.HasPrefix(r.Local, a+":") }
}

// TestLabGatewayAddressBlackhole: a silent blackhole of the gateway address
// in use moves the SA to the gateway's other address (an extra peer address
// of the connection), and the tunnel works again.
func TestLabGatewayAddressBlackhole(t *testing.T) {
	ctx, r := adoptedRig(t, "dgw", "")
	ev := r.recordEvents(ctx)
	r.impair(ctx, "gw1", lab.Impairment{Kind: lab.Blackhole})
	start := time.Now()
	s := r.sa(ctx, 20*time.Second, "SA off the blackholed gateway address", func(s lab.SAInfo) bool { return s.RemoteHost == gwAddr2 })
	moved := time.Since(start)
	res := r.pingOK(ctx, "after the move to "+gwAddr2)
	t.Logf("gw1 blackholed: SA moved to %s→%s in %.2fs; tunnel ping %d/%d", s.LocalHost, s.RemoteHost, moved.Seconds(), res.Received, res.Sent)
	if len(ev.match("SteerRequested", gwAddr2)) == 0 {
		t.Fatalf("no steer towards %s in the trace:\n%s", gwAddr2, ev)
	}
	r.row(ctx, 5*time.Second, "status shows the new remote", func(r control.SARow) bool { return strings.HasPrefix(r.Remote, gwAddr2+":") })
	// The forced move takes the pair that shares neither the uplink nor the
	// gateway address with the dead one; after the hold-down (5 s) the SA
	// returns to the preferred uplink a, still on the gateway's other address.
	fin := r.sa(ctx, 15*time.Second, "SA on uplink a to "+gwAddr2, func(s lab.SAInfo) bool { return s.LocalHost == mnAddrA && s.RemoteHost == gwAddr2 })
	if fin.UniqueID != s.UniqueID {
		t.Fatalf("SA replaced (%s → %s) instead of moved", s.UniqueID, fin.UniqueID)
	}
	res = r.pingOK(ctx, "on "+mnAddrA+"→"+gwAddr2)
	t.Logf("then on %s→%s after %.2fs; tunnel ping %d/%d", fin.LocalHost, fin.RemoteHost, time.Since(start).Seconds(), res.Received, res.Sent)
}

// TestLabLinkDown: when the active uplink's link goes down, charon's own
// roam and mobiked's steer agree on the uplink mobiked prefers next (b), and
// the tunnel recovers.
func TestLabLinkDown(t *testing.T) {
	ctx, r := adoptedRig(t, "dld", "")
	r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkDown})
	start := time.Now()
	s := r.sa(ctx, 20*time.Second, "SA onto uplink b", func(s lab.SAInfo) bool { return s.LocalHost == mnAddrB })
	moved := time.Since(start)
	// Charon's MOBIKE update must settle on b and stay there (not roam
	// back and forth between b and a dead address).
	res := r.pingOK(ctx, "after link down")
	s2 := r.sa(ctx, 5*time.Second, "SA still on b", func(s lab.SAInfo) bool { return s.LocalHost == mnAddrB })
	if s2.UniqueID != s.UniqueID {
		t.Fatalf("SA replaced (%s → %s) instead of moved", s.UniqueID, s2.UniqueID)
	}
	r.row(ctx, 5*time.Second, "status on eth1", func(r control.SARow) bool { return onLocal(mnAddrB)(r) && r.Uplink == "eth1" })
	t.Logf("link a down: SA on %s→%s after %.2fs; tunnel ping %d/%d", s.LocalHost, s.RemoteHost, moved.Seconds(), res.Received, res.Sent)
}

// slaConfig gives both uplinks the same priority so that the SLA decides.
const slaConfig = `uplinks:
  - name: eth0
    priority: 300
  - name: eth1
    priority: 300
connections:
  - name: lab
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2"]
    hold_down: 5s
    sla:
      max_loss: 0.03
probes:
  active_interval: 200ms
  standby_interval: 1s
  timeout: 250ms
  loss_threshold: 3
`

// TestLabLossAboveSLA: loss above the connection's SLA on the active pair
// moves the SA to a pair within the SLA (uplinks of equal priority, so the
// SLA decides). The router drops 5 % each way, about 10 % of probe round
// trips: above the 3 % SLA and far below what takes a pair down (the
// issue's 30 % each way is about 51 % round-trip loss, which marks the pair
// down, a different path through the decision).
func TestLabLossAboveSLA(t *testing.T) {
	ctx, r := adoptedRig(t, "dsla", slaConfig)
	ev := r.recordEvents(ctx)
	r.impair(ctx, "a", lab.Impairment{Kind: lab.Loss, LossPct: 5})
	start := time.Now()
	s := r.sa(ctx, 30*time.Second, "SA off the lossy uplink", func(s lab.SAInfo) bool { return s.LocalHost == mnAddrB })
	moved := time.Since(start)
	res := r.pingOK(ctx, "after the move off the lossy uplink")
	// A standby pair on a (to the gateway's other address) may have too
	// few samples yet to show the loss and be tried first; the SA must end
	// up on b all the same.
	steers := ev.match("SteerRequested", "=> "+mnAddrB)
	if len(steers) == 0 {
		t.Fatalf("no steer towards %s in the trace:\n%s", mnAddrB, ev)
	}
	t.Logf("moves: %d", len(ev.match("SAMoved", "")))
	e, err := r.c.Explain(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Candidates) == 0 || !e.Candidates[0].Current || !e.Candidates[0].SLAMet || e.Candidates[0].Uplink != "eth1" {
		t.Fatalf("explain after the move: want the current pair on eth1 first and within SLA: %+v", e)
	}
	t.Logf("5%% loss each way on a: SA on %s→%s after %.2fs (%s); tunnel ping %d/%d", s.LocalHost, s.RemoteHost, moved.Seconds(), steers[len(steers)-1].Text, res.Received, res.Sent)
}

// TestLabFlap: uplink a flaps (link down/up every second) for 30 s. The SA
// is moved at most 3 times, is never lost, and the tunnel works at the end.
func TestLabFlap(t *testing.T) {
	ctx, r := adoptedRig(t, "dflp", "")
	before, err := r.l.SA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := r.recordEvents(ctx)
	end := time.Now().Add(30 * time.Second)
	down := false
	for time.Now().Before(end) {
		kind := lab.LinkDown
		if down {
			kind = lab.LinkUp
		}
		r.impair(ctx, "a", lab.Impairment{Kind: kind})
		down = !down
		time.Sleep(time.Second)
	}
	if down {
		r.impair(ctx, "a", lab.Impairment{Kind: lab.LinkUp})
	}
	steers := ev.match("SteerRequested", "")
	moves := ev.match("SAMoved", "")
	t.Logf("30 s of flapping: %d steers, %d SA moves", len(steers), len(moves))
	if len(steers) > 3 {
		t.Fatalf("%d steers during the flap (want at most 3):\n%s", len(steers), ev)
	}
	// charon roams on its own when a's address vanishes; mobiked must keep
	// the total bounded as well.
	if len(moves) > 3 {
		t.Fatalf("%d SA moves during the flap (want at most 3):\n%s", len(moves), ev)
	}
	after := r.sa(ctx, 5*time.Second, "SA established after the flap", func(lab.SAInfo) bool { return true })
	all, err := r.l.ListSAs(ctx, "mn")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("want exactly one IKE SA after the flap, got %+v", all)
	}
	if after.UniqueID != before.UniqueID {
		t.Fatalf("SA was lost and re-established (%s → %s)", before.UniqueID, after.UniqueID)
	}
	res := r.pingOK(ctx, "after the flap")
	t.Logf("after the flap: SA #%s on %s→%s, tunnel ping %d/%d", after.UniqueID, after.LocalHost, after.RemoteHost, res.Received, res.Sent)
}

// TestLabRestarts: restarting mobiked does not move the SA; restarting
// charon in mn (and re-initiating) resyncs mobiked's state, and steering
// still works afterwards.
func TestLabRestarts(t *testing.T) {
	lab.RequireRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := upRig(t, ctx, "drs", "", lab.Options{})
	first := r.row(ctx, 10*time.Second, "adopt SA on a", onLocal(mnAddrA))
	r.operational(ctx, 10*time.Second, 4)

	// SIGHUP with a broken file: mobiked keeps running on the old config.
	if err := os.WriteFile(r.l.MobikedConfigPath(), []byte("connections:\n  - name: lab\n    hold_down: 5x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := r.l.St.Pids["mobiked"]
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(r.l.MobikedLog())
		if strings.Contains(string(b), "reload failed; keeping the running config") && strings.Contains(string(b), `bad duration \"5x\"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reload failure logged after SIGHUP with a broken config")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("mobiked gone after SIGHUP with a broken config: %v", err)
	}
	r.row(ctx, 5*time.Second, "status after the failed reload", onLocal(mnAddrA))

	// Restart mobiked: it adopts the SA where it is.
	r.restartMobiked(ctx)
	ev := r.recordEvents(ctx)
	r.operational(ctx, 10*time.Second, 4)
	// Every pair is tested again; give the ranking a few probe rounds.
	time.Sleep(2 * time.Second)
	row := r.row(ctx, 5*time.Second, "SA still on a after the restart", func(r control.SARow) bool {
		return onLocal(mnAddrA)(r) && strings.HasPrefix(r.Remote, gwAddr1+":")
	})
	if row.ID != first.ID {
		t.Fatalf("SA changed over the restart of mobiked: %+v → %+v", first, row)
	}
	if st := ev.match("SteerRequested", ""); len(st) > 0 {
		t.Fatalf("mobiked steered after its restart:\n%s", ev)
	}
	r.sa(ctx, time.Second, "charon's SA on a", func(s lab.SAInfo) bool { return s.LocalHost == mnAddrA && s.RemoteHost == gwAddr1 })

	// Restart charon in mn and re-initiate: mobiked sees the new SA.
	if err := r.l.StopCharon(ctx, "mn"); err != nil {
		t.Fatal(err)
	}
	waitCharon(t, ctx, r, false)
	if err := r.l.StartCharon(ctx, "mn"); err != nil {
		t.Fatal(err)
	}
	if err := r.l.Initiate(ctx); err != nil {
		t.Fatal(err)
	}
	sa := r.sa(ctx, 10*time.Second, "new SA after the charon restart", func(lab.SAInfo) bool { return true })
	// Generous under a loaded CI machine (the whole suite runs in parallel
	// on 2 cores); the vici lab test asserts the 2 s reconnect itself.
	r.row(ctx, 20*time.Second, "status shows the new SA", func(row control.SARow) bool {
		return row.State == "established" || strings.EqualFold(row.State, sa.State)
	})
	r.row(ctx, 10*time.Second, "status shows the new SA on "+sa.LocalHost, onLocal(sa.LocalHost))

	// Steering resumes: a blackhole of the SA's uplink moves it.
	from, to, path := mnAddrA, mnAddrB, "a"
	if sa.LocalHost == mnAddrB {
		from, to, path = mnAddrB, mnAddrA, "b"
	}
	r.operational(ctx, 10*time.Second, 4)
	r.impair(ctx, path, lab.Impairment{Kind: lab.Blackhole})
	start := time.Now()
	r.sa(ctx, 20*time.Second, "SA moved off "+from+" after the charon restart", func(s lab.SAInfo) bool { return s.LocalHost == to })
	moved := time.Since(start)
	r.pingOK(ctx, "after the move")
	t.Logf("after restarts of mobiked and charon: blackhole of %s moved the SA %s→%s in %.2fs", path, from, to, moved.Seconds())
}

// waitCharon waits until mobiked reports charon up (or down).
func waitCharon(t *testing.T, ctx context.Context, r *labRig, up bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last control.Status
	for time.Now().Before(deadline) {
		st, err := r.c.Status(ctx)
		if err == nil {
			last = st
			if st.CharonUp == up && (up || len(st.SAs) == 0) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("charon up=%t not seen by mobiked within 10s: %+v", up, last)
}

// natForbidConfig probes with STAMP: ICMP echo replies cannot show a NAT,
// the reflector's Location TLV (the source address it saw) does.
const natForbidConfig = `uplinks:
  - name: eth0
    priority: 300
  - name: eth1
    priority: 200
connections:
  - name: lab
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2"]
    hold_down: 5s
    nat: forbid
    probe: stamp
probes:
  active_interval: 200ms
  standby_interval: 1s
  timeout: 250ms
  loss_threshold: 3
`

// startGWReflector runs a STAMP reflector in the lab's gateway namespace
// until the test ends.
func startGWReflector(t *testing.T, l *lab.Lab) {
	t.Helper()
	refl, err := probe.NewReflector(probe.ReflectorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.PacketConn
	err = lab.InNetNS(l.NS("gw"), func() error {
		for _, a := range []string{"0.0.0.0:862", "[::]:862"} {
			network := "udp4"
			if a[0] == '[' {
				network = "udp6"
			}
			c, err := net.ListenPacket(network, a)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		t.Fatalf("reflector in gw: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = refl.Serve(ctx, c) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
}

// TestLabNATForbid: a connection with nat: forbid never moves onto the
// NATed uplink b, even when a is blackholed: it stays and raises the
// nat-forbidden alert.
func TestLabNATForbid(t *testing.T) {
	lab.RequireRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	r := upRig(t, ctx, "dnat", natForbidConfig, lab.Options{NATB: true, NoSA: true})
	startGWReflector(t, r.l)
	if err := r.l.Initiate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("lab up and SA established in %.1fs", time.Since(t0).Seconds())
	r.row(ctx, 10*time.Second, "adopt SA on a", onLocal(mnAddrA))
	// STAMP sees the NAT on b's pairs and none on a's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := r.c.Paths(ctx)
		if err != nil {
			t.Fatal(err)
		}
		natB, cleanA := 0, 0
		for _, p := range ps {
			switch {
			case p.Uplink == "eth1" && p.NAT == "nat":
				natB++
			case p.Uplink == "eth0" && p.NAT == "none" && p.State == "operational":
				cleanA++
			}
		}
		if natB >= 2 && cleanA >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NAT not detected on b (or a not clean) within 10s: %+v", ps)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ev := r.recordEvents(ctx)
	r.impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole})
	// Watch for 12 s (past charon's own DPD at 5 s and its first
	// retransmit): the SA must never be on b.
	var alert string
	end := time.Now().Add(12 * time.Second)
	for time.Now().Before(end) {
		sas, err := r.l.ListSAs(ctx, "mn")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sas {
			if s.LocalHost == mnAddrB || strings.HasPrefix(s.LocalHost, "fd00:2:") {
				t.Fatalf("SA moved onto the NATed uplink b: %+v\n%s", s, ev)
			}
		}
		if a := ev.match("alert", "nat-forbidden"); alert == "" && len(a) > 0 {
			alert = a[0].Text
		}
		time.Sleep(200 * time.Millisecond)
	}
	if alert == "" {
		t.Fatalf("no nat-forbidden alert after the blackhole of a:\n%s", ev)
	}
	if st := ev.match("SteerRequested", "=> "+mnAddrB); len(st) > 0 {
		t.Fatalf("mobiked steered onto b: %+v", st)
	}
	e, err := r.c.Explain(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.Current, mnAddrA) || !strings.Contains(e.Decision, "forbids NAT") {
		t.Fatalf("explain: want to stay on a because NAT is forbidden: %+v", e)
	}
	t.Logf("a blackholed, b NATed: stays on %s; alert %q; decision %q", e.Current, alert, e.Decision)
}
