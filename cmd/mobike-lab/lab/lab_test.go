package lab_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// TestLabCharonAloneLinkDown is the foundation's end-to-end test with real
// charon: lab up → SA ESTABLISHED on uplink a → tunnel ping → link of uplink a
// down → charon alone roams to uplink b → restore → down leaves nothing.
func TestLabCharonAloneLinkDown(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name = "le2e"
	l, err := lab.Up(ctx, lab.Options{Name: name, DPD: 5 * time.Second})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), name) })

	sa, err := l.SA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sa.State != "ESTABLISHED" || sa.LocalHost != lab.MNAddrA.String() || sa.RemoteHost != lab.GWAddr1.String() || !sa.Initiator {
		t.Fatalf("SA after up = %+v, want ESTABLISHED initiator 10.1.0.2 <-> 10.3.0.2", sa)
	}
	if res, err := l.Ping(ctx, 20, 10*time.Millisecond); err != nil || res.Received < 19 {
		t.Fatalf("tunnel ping before: %+v, %v", res, err)
	}

	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.LinkDown}); err != nil {
		t.Fatal(err)
	}
	// charon probes every peer address it knows (v4 and v6, from the
	// gateway's ADDITIONAL_*_ADDRESS notifies) and takes the first answer, so
	// either family of uplink b is a correct roam.
	sa, err = l.WaitSA(ctx, 10*time.Second, func(s lab.SAInfo) bool {
		return s.LocalHost == lab.MNAddrB.String() || s.LocalHost == lab.MNAddr6B.String()
	})
	if err != nil {
		t.Fatalf("charon alone did not roam to uplink b after link down: %v", err)
	}
	if sa.State != "ESTABLISHED" {
		t.Fatalf("SA after roam: %+v", sa)
	}
	if res, err := l.Ping(ctx, 20, 10*time.Millisecond); err != nil || res.Received < 19 {
		t.Fatalf("tunnel ping after roam: %+v, %v", res, err)
	}
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Restore}); err != nil {
		t.Fatal(err)
	}
	// The restored uplink works again (plain ping from its address).
	if out, err := l.Exec(ctx, "mn", "ping", "-c", "1", "-W", "2", "-I", lab.MNAddrA.String(), lab.GWAddr1.String()); err != nil {
		t.Fatalf("uplink a after restore: %v\n%s", err, out)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name+"-") {
		t.Fatalf("namespaces left after down:\n%s", out)
	}
	// Down of a lab that is not there succeeds.
	if err := lab.Down(ctx, name); err != nil {
		t.Fatalf("second down: %v", err)
	}
}

// TestLabImpairments checks the router's nftables impairments and NAT.
func TestLabImpairments(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name = "limp"
	l, err := lab.Up(ctx, lab.Options{Name: name, NATB: true, NoSA: true})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), name) })
	ping := func(src, dst string) error {
		_, err := l.Exec(ctx, "mn", "ping", "-c", "1", "-W", "1", "-I", src, dst)
		return err
	}
	for _, p := range []struct{ src, dst string }{{"eth0", "10.3.0.2"}, {"eth1", "10.3.0.2"}, {"eth0", "10.4.0.2"}} {
		if err := ping(p.src, p.dst); err != nil {
			t.Fatalf("%s -> %s before impairment: %v", p.src, p.dst, err)
		}
	}
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}); err != nil {
		t.Fatal(err)
	}
	if err := ping("eth0", "10.3.0.2"); err == nil {
		t.Fatal("ping over blackholed uplink a succeeded")
	}
	if err := ping("eth1", "10.3.0.2"); err != nil {
		t.Fatalf("uplink b affected by a's blackhole: %v", err)
	}
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Restore}); err != nil {
		t.Fatal(err)
	}
	if err := l.Impair(ctx, "gw1", lab.Impairment{Kind: lab.Blackhole}); err != nil {
		t.Fatal(err)
	}
	if err := ping("eth0", "10.3.0.2"); err == nil {
		t.Fatal("ping to blackholed gw1 succeeded")
	}
	if err := ping("eth0", "10.4.0.2"); err != nil {
		t.Fatalf("gw2 affected by gw1's blackhole: %v", err)
	}
	if err := l.Impair(ctx, "gw1", lab.Impairment{Kind: lab.Restore}); err != nil {
		t.Fatal(err)
	}
	// 100 % loss behaves like a blackhole; 0 % like nothing.
	if err := l.Impair(ctx, "b", lab.Impairment{Kind: lab.Loss, LossPct: 100}); err != nil {
		t.Fatal(err)
	}
	if err := ping("eth1", "10.3.0.2"); err == nil {
		t.Fatal("ping over 100% loss succeeded")
	}
	if err := l.Impair(ctx, "b", lab.Impairment{Kind: lab.Loss, LossPct: 0}); err != nil {
		t.Fatal(err)
	}
	if err := ping("eth1", "10.3.0.2"); err != nil {
		t.Fatalf("ping over 0%% loss: %v", err)
	}
	if err := l.Impair(ctx, "x", lab.Impairment{Kind: lab.Blackhole}); err == nil || !strings.Contains(err.Error(), "unknown path") {
		t.Fatalf("unknown path: err = %v", err)
	}
	if err := l.Impair(ctx, "gw1", lab.Impairment{Kind: lab.NATOn}); err == nil {
		t.Fatal("nat on a gateway path accepted")
	}
	// The router's ruleset masquerades uplink b.
	out, err := l.Exec(ctx, "r", "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "ip saddr 10.2.0.0/24") || !strings.Contains(string(out), "masquerade") {
		t.Fatalf("no masquerade for uplink b:\n%s", out)
	}
}

func TestUpWithoutStrongSwan(t *testing.T) {
	lab.RequireRoot(t)
	old := lab.CharonBin
	lab.CharonBin = "/nonexistent/charon"
	defer func() { lab.CharonBin = old }()
	_, err := lab.Up(context.Background(), lab.Options{Name: "lnoss"})
	if !errors.Is(err, lab.ErrNoStrongSwan) || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("up without charon: err = %v, want a hint to run make deps", err)
	}
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", "UPPER", "way-too-long-name", "a/b"} {
		if err := lab.Down(context.Background(), n); err == nil {
			t.Errorf("Down(%q) accepted a bad name", n)
		}
	}
}
