package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

// buildMobiked builds the daemon binary for the lab tests.
func buildMobiked(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mobiked")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build mobiked: %v\n%s", err, out)
	}
	return bin
}

func upWithMobiked(t *testing.T, ctx context.Context, name string, o lab.Options) (*lab.Lab, *control.Client) {
	t.Helper()
	bin := buildMobiked(t)
	o.Name = name
	o.Controller = true
	o.ControllerConf = deploy.MobikedConf
	o.StartController = func(ctx context.Context, l *lab.Lab) (int, error) { return l.StartMobiked(ctx, bin, "") }
	if o.DPD == 0 {
		o.DPD = 5 * time.Second
	}
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := exec.Command("tail", "-n", "60", l.MobikedLog()).CombinedOutput(); err == nil {
				t.Logf("mobiked log:\n%s", out)
			}
		}
		_ = lab.Down(context.Background(), name)
	})
	return l, control.NewClient(l.MobikedSocket())
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

// TestLabBlackholeFailover: a silent blackhole of the active uplink moves the
// SA to the other uplink (charon alone never recovers) and the tunnel ping
// recovers.
func TestLabBlackholeFailover(t *testing.T) {
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
	if _, err := l.WaitSA(ctx, 20*time.Second, func(s lab.SAInfo) bool { return s.LocalHost == lab.MNAddrB.String() }); err != nil {
		t.Fatalf("SA did not move off the blackholed uplink: %v", err)
	}
	t.Logf("moved to uplink b %.2fs after the blackhole", time.Since(start).Seconds())
	if res, err := l.Ping(ctx, 50, 10*time.Millisecond); err != nil || res.Received < res.Sent*9/10 {
		t.Fatalf("tunnel ping after failover: %+v %v", res, err)
	}
	// The move is visible to operators with its reason.
	e, err := c.Explain(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.Current, "10.2.0.2") || len(e.Candidates) == 0 {
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
