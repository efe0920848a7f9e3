package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// checkDropIKEDetected (issue 13) runs on TestLabIKEProbeMethod's lab, with
// the SA on uplink a and `probe: ike`: the router starts dropping UDP 500
// and 4500 on path a while ICMP still passes, as a middlebox filtering IKE
// would. An ICMP probe would keep finding the path fine (the documented limit
// of ICMP probing, docs/architecture.md); the IKE probe finds a's pairs down
// and mobiked moves the SA to uplink b.
func checkDropIKEDetected(t *testing.T, ctx context.Context, r *labRig) {
	t.Helper()
	if err := r.l.Impair(ctx, "a", lab.Impairment{Kind: lab.DropIKE}); err != nil {
		t.Fatal(err)
	}
	defer r.l.Impair(context.Background(), "a", lab.Impairment{Kind: lab.Restore})
	start := time.Now()
	out, err := r.l.Exec(ctx, "mn", "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1",
		"-I", lab.MNAddrA.String(), lab.GWAddr1.String())
	if err != nil {
		t.Fatalf("ICMP over uplink a must still pass with IKE dropped: %v\n%s", err, out)
	}
	row := waitStatus(t, ctx, r.c, 20*time.Second, func(row control.SARow) bool { return row.Uplink == "eth1" })
	moved := time.Since(start)
	// the SA's pair fails first (active profile); the standby pair of a
	// follows within a few of its intervals
	var rows []control.PathRow
	down, pairs := 0, 0
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		rows, err = r.c.Paths(ctx)
		down, pairs = 0, 0
		for _, p := range rows {
			if p.Local == lab.MNAddrA.String() && strings.HasPrefix(p.Remote, "10.") {
				pairs++
				if p.Method == "ike" && p.State == "down" {
					down++
				}
			}
		}
		if err == nil && pairs > 0 && down == pairs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IKE dropped on a: %d of %d IPv4 pairs of a down after 15 s: %v\n%+v", down, pairs, err, rows)
		}
	}
	sa, err := r.l.SA(ctx)
	if err != nil || sa.LocalHost != lab.MNAddrB.String() {
		t.Fatalf("charon's SA %+v, %v; want it on uplink b", sa, err)
	}
	// Uplink b's pairs, now probed at the active interval, stay up: the
	// IKE prober offers a refused proposal on most probes, so the gateway
	// never holds block_threshold (5) half-open SAs from 10.2.0.2 (it
	// ignored b's probes within a second, and b's pairs flapped, before).
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		rows, err := r.c.Paths(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rows {
			if p.Local == lab.MNAddrB.String() && p.State == "down" {
				t.Fatalf("pair %s -> %s of uplink b down (sent %d received %d) with IKE probes; gateway log:\n%s",
					p.Local, p.Remote, p.Sent, p.Received, grepFile(r.l.Dir+"/gw-charon.log", "half-open"))
			}
		}
	}
	t.Logf("IKE dropped on a, ICMP answered: %d pairs of a down by IKE probes, SA on %s (%s) %.2f s after the impairment",
		down, row.Uplink, sa.LocalHost, moved.Seconds())
}

// grepFile returns the lines of file containing sub (at most the last 20).
func grepFile(file, sub string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-20):], "\n")
}
