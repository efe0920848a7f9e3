package steer

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// TestArmRoamKernel: in a namespace, ArmRoam makes the kernel announce a
// route in mobiked's table through the uplink with its source (what charon
// reacts to) and then its removal, for either family, and leaves every table
// and rule as it was; a leftover of a crash between the two is removed by
// the next Set.
func TestArmRoamKernel(t *testing.T) {
	ns, h := newNS(t)
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	updates, done := make(chan netlink.RouteUpdate, 64), make(chan struct{})
	defer close(done)
	if err := netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{Namespace: &nsh}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ns)
	a0 := linkIdx(t, h, "a0")
	for _, tc := range []struct {
		local, dst string
	}{{"10.1.0.2", "255.255.255.255/32"}, {"fd00:1::2", "ff0f::6d6f:6269:6b65/128"}} {
		if err := s.ArmRoam(a0, netip.MustParseAddr(tc.local)); err != nil {
			t.Fatalf("arm from %s: %v", tc.local, err)
		}
		var got []string
		timeout := time.After(5 * time.Second)
		for len(got) < 2 {
			select {
			case u := <-updates:
				if u.Table != DefaultTable {
					continue
				}
				if u.Dst.String() != tc.dst || u.LinkIndex != a0 || !u.Src.Equal(netip.MustParseAddr(tc.local).AsSlice()) {
					t.Fatalf("announced %+v, want %s dev a0 src %s", u.Route, tc.dst, tc.local)
				}
				got = append(got, map[uint16]string{unix.RTM_NEWROUTE: "new", unix.RTM_DELROUTE: "del"}[u.Type])
			case <-timeout:
				t.Fatalf("announcements %v, want new and del of %s", got, tc.dst)
			}
		}
		if !slices.Equal(got, []string{"new", "del"}) {
			t.Fatalf("announcements %v, want new then del", got)
		}
	}
	if got := snapshot(t, ns); got != before {
		t.Errorf("after arming:\n%s\nwant:\n%s", got, before)
	}
	if s.Arms() != 2 {
		t.Errorf("Arms() = %d, want 2", s.Arms())
	}
	if err := s.ArmRoam(0, netip.MustParseAddr("10.1.0.2")); err == nil {
		t.Error("arm without an uplink: no error")
	}
	// A crash between the add and the delete leaves the route: ours, not
	// wanted, removed by the next Set.
	sh(t, "ip", "-n", ns, "route", "add", "255.255.255.255/32", "dev", "a0", "src", "10.1.0.2", "table", "2100", "proto", "77", "scope", "link")
	if _, err := s.Set(mobike.Desired{}); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, "ip", "-n", ns, "route", "show", "table", "2100"); strings.Contains(got, "255.255.255.255") {
		t.Errorf("leftover arm route kept: %q", got)
	}
}

// TestRunArmsBeforeApplying: Run carries out the latest arm request before
// the routing state submitted with it, and counts it.
func TestRunArmsBeforeApplying(t *testing.T) {
	k := &fakeKernel{}
	s := newFake(t, k)
	s.RequestArmRoam(2, netip.MustParseAddr("10.1.0.9")) // replaced by the next
	s.RequestArmRoam(3, la)
	s.Submit(mobike.ActRouting{Gen: 1, State: state(grp("p", lb, r1, 3, gwb))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	<-s.Events()
	cancel()
	<-done
	if len(k.ops) < 3 || k.ops[0] != "add route table 2100 255.255.255.255/32 dev 3 src 10.1.0.2" ||
		k.ops[1] != "del route table 2100 255.255.255.255/32 dev 3 src 10.1.0.2" {
		t.Fatalf("kernel changes %q, want the arm first", k.ops)
	}
	if s.Arms() != 1 {
		t.Errorf("Arms() = %d, want 1", s.Arms())
	}
}
