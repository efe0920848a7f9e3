package monitor

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// xfrmHandle opens an XFRM netlink socket in a fresh namespace hn-xf-x.
// This kernel has no ESP (no state can be added), so only the miss is
// real: a hit is covered by the unit tests with a fake handle.
func xfrmHandle(t testing.TB) *netlink.Handle {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		skipUnlessRoot(tt)
	}
	const name = "hn-xf-x"
	_ = exec.Command("ip", "netns", "del", name).Run() // leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_XFRM)
	if err != nil {
		t.Fatalf("xfrm handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// The kernel's answer for a state it does not have is recognised as
// ErrNoXFRMState (kernel-libipsec: the composite falls back to VICI).
func TestNetnsXFRMNoState(t *testing.T) {
	h := xfrmHandle(t)
	k := &fakeKeys{keys: map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote, Children: []XFRMChild{esp(0xc1a2b3c4, 0xd5e6f708)}}}}
	_, err := NewXFRMCounters(h, k, nil).SACounters(context.Background(), xref)
	if !errors.Is(err, ErrNoXFRMState) {
		t.Fatalf("err %v, want ErrNoXFRMState", err)
	}
}

// BenchmarkXFRMStateGet: one XFRM_MSG_GETSA round trip to the kernel (a
// miss here; a hit adds the parsing of one ~300-byte answer). A netlink
// reading of an SA with one CHILD_SA is two of these.
func BenchmarkXFRMStateGet(b *testing.B) {
	h := xfrmHandle(b)
	q := &netlink.XfrmState{Dst: xLocal.AsSlice(), Proto: netlink.XFRM_PROTO_ESP, Spi: 0xc1a2b3c4}
	for b.Loop() {
		if _, err := h.XfrmStateGet(q); !errors.Is(err, unix.ESRCH) {
			b.Fatalf("err %v", err)
		}
	}
}
