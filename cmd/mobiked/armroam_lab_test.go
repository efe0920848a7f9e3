package main

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/vici/steer"
)

// fastLabConfig is the lab config with the fast profile: active probes every
// 50 ms, adaptive timeout with a 25 ms floor (short enough to arm charon's
// roam evaluation at the first loss).
var fastLabConfig = strings.Replace(lab.LabMobikedConfig, "  active_interval: 200ms\n",
	"  active_interval: 50ms\n  min_timeout: 25ms\n", 1)

// charonKept counts charon's roam evaluations that kept the SA's path.
func charonKept(t *testing.T, l *lab.Lab) int {
	t.Helper()
	b, err := os.ReadFile(l.CharonLog("mn"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("keeping connection path"))
}

// TestLabArmRoam, against the real charon: (1) the arm route (steer.ArmRoam
// in mn: a route added and removed in mobiked's table, routing nothing)
// makes charon run a roam evaluation, which keeps the working path; (2)
// with the fast profile, a blackhole of the active uplink arms it at the
// first loss (mobike_charon_roam_arms_total) and the SA moves to uplink b,
// the tunnel working.
func TestLabArmRoam(t *testing.T) {
	ctx, r := adoptedRig(t, "darm", fastLabConfig)

	nsh, err := netns.GetFromName(r.l.NS("mn"))
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := steer.New(steer.Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	kept := charonKept(t, r.l)
	if err := s.ArmRoam(eth0.Attrs().Index, netip.MustParseAddr(mnAddrA)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for charonKept(t, r.l) == kept {
		if time.Now().After(deadline) {
			t.Fatalf("no roam evaluation by charon after the arm route (no new %q in %s)", "keeping connection path", r.l.CharonLog("mn"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sa, err := r.l.SA(ctx); err != nil || sa.LocalHost != mnAddrA {
		t.Fatalf("after the arm: SA %+v (%v), want it kept on %s", sa, err, mnAddrA)
	}

	armsBefore, err := r.l.MobikedMetric(ctx, "mobike_charon_roam_arms_total")
	if err != nil {
		t.Fatal(err)
	}
	r.impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole})
	start := time.Now()
	sa := r.sa(ctx, 20*time.Second, "SA on uplink b", func(s lab.SAInfo) bool { return s.LocalHost == mnAddrB })
	moved := time.Since(start)
	res := r.pingOK(ctx, "after the move to "+mnAddrB)
	arms, err := r.l.MobikedMetric(ctx, "mobike_charon_roam_arms_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("blackhole of a: SA on %s→%s after %.2fs (polled); %v arms; tunnel ping %d/%d",
		sa.LocalHost, sa.RemoteHost, moved.Seconds(), arms-armsBefore, res.Received, res.Sent)
	if arms <= armsBefore {
		t.Fatalf("no arm of charon's roam evaluation at the blackhole (mobike_charon_roam_arms_total %v → %v)", armsBefore, arms)
	}
}
