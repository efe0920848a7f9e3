package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// upWithMobiked brings up lab name with mobiked running the lab's default
// config (see upRig).
func upWithMobiked(t *testing.T, ctx context.Context, name string, o lab.Options) (*lab.Lab, *control.Client) {
	t.Helper()
	r := upRig(t, ctx, name, "", o)
	return r.l, r.c
}

// waitStatus polls mobikectl status until ok or timeout.
func waitStatus(t *testing.T, ctx context.Context, c *control.Client, timeout time.Duration, ok func(control.SARow) bool) control.SARow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last control.Status
	for time.Now().Before(deadline) {
		st, err := c.Status(ctx)
		if err == nil {
			last = st
			for _, r := range st.SAs {
				if r.Conn == "lab" && ok(r) {
					return r
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s; last status %+v", timeout, last)
	return control.SARow{}
}

// TestLabBlackholeFailoverAndFailback: a silent blackhole of the active
// uplink moves the SA to the other uplink (charon alone never recovers), the
// tunnel ping recovers, and when uplink a returns the SA moves back only after
// the hold-down, without losing tunnel pings.
func TestLabBlackholeFailoverAndFailback(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, c := upWithMobiked(t, ctx, "dbh", lab.Options{})
	// mobiked adopts the SA where it is: no move at start.
	waitStatus(t, ctx, c, 10*time.Second, func(r control.SARow) bool {
		return strings.HasPrefix(r.Local, "10.1.0.2:") && r.Uplink == "eth0"
	})
	// Wait until the standby pairs are tested, then blackhole uplink a.
	waitPaths(t, ctx, c, 10*time.Second, 4)
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.WaitSA(ctx, 20*time.Second, func(s lab.SAInfo) bool { return onUplink(s.LocalHost, "b") }); err != nil {
		t.Fatalf("SA did not move off the blackholed uplink: %v", err)
	}
	t.Logf("moved to uplink b %.2fs after the blackhole", time.Since(start).Seconds())
	if res, err := l.Ping(ctx, 50, 10*time.Millisecond); err != nil || res.Received < res.Sent*9/10 {
		t.Fatalf("tunnel ping after failover: %+v %v", res, err)
	}
	// Failback: restore a; the move back waits for the hold-down (5 s in the
	// lab config) and loses no tunnel ping (make-before-break).
	pingDone := make(chan lab.PingResult, 1)
	go func() {
		r, _ := l.Ping(ctx, 2000, 10*time.Millisecond)
		pingDone <- r
	}()
	time.Sleep(500 * time.Millisecond)
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Restore}); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	if _, err := l.WaitSA(ctx, 30*time.Second, func(s lab.SAInfo) bool { return onUplink(s.LocalHost, "a") }); err != nil {
		t.Fatalf("SA did not return to uplink a: %v", err)
	}
	back := time.Since(restored)
	if back < 5*time.Second {
		t.Fatalf("moved back %.2fs after restore, before the 5 s hold-down", back.Seconds())
	}
	res := <-pingDone
	t.Logf("failback %.2fs after restore; tunnel ping %d/%d, longest gap %.3fs", back.Seconds(), res.Received, res.Sent, res.LongestGap.Seconds())
	if res.Sent-res.Received > 3 {
		t.Fatalf("failback lost %d tunnel pings (make-before-break expected)", res.Sent-res.Received)
	}

	// The moves are visible to operators with their reasons.
	e, err := c.Explain(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if cur, _, _ := strings.Cut(e.Current, "->"); !onUplink(cur, "a") || len(e.Candidates) == 0 || !e.Candidates[0].Current {
		t.Fatalf("explain after failover: %+v", e)
	}
}

func waitPaths(t *testing.T, ctx context.Context, c *control.Client, timeout time.Duration, n int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ps, err := c.Paths(ctx)
		ok := 0
		for _, p := range ps {
			if p.State == "operational" {
				ok++
			}
		}
		if err == nil && ok >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d operational pairs after %s", n, timeout)
}

// onUplink reports whether addr is mn's address (either family) on uplink a or b.
func onUplink(addr, uplink string) bool {
	switch uplink {
	case "a":
		return addr == lab.MNAddrA.String() || addr == lab.MNAddr6A.String()
	case "b":
		return addr == lab.MNAddrB.String() || addr == lab.MNAddr6B.String()
	}
	return false
}
