package monitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// fakeXFRM is a kernel XFRM state table keyed by (dst, spi, proto, mark).
type fakeXFRM struct {
	states map[string]netlink.XfrmStateStats
	err    error // returned for every get when set
	gets   []string
}

func xfrmID(dst string, spi uint32, p netlink.Proto, mark uint32) string {
	return fmt.Sprintf("%s/%08x/%d/%d", dst, spi, p, mark)
}

func (f *fakeXFRM) XfrmStateGet(q *netlink.XfrmState) (*netlink.XfrmState, error) {
	var mark uint32
	if q.Mark != nil {
		if q.Mark.Mask != 0xffffffff {
			return nil, fmt.Errorf("mask %x", q.Mark.Mask)
		}
		mark = q.Mark.Value
	}
	id := xfrmID(q.Dst.String(), uint32(q.Spi), q.Proto, mark)
	f.gets = append(f.gets, id)
	if f.err != nil {
		return nil, f.err
	}
	st, ok := f.states[id]
	if !ok {
		return nil, unix.ESRCH // what the kernel answers for a missing state
	}
	return &netlink.XfrmState{Dst: q.Dst, Spi: q.Spi, Proto: q.Proto, Statistics: st}, nil
}

// fakeKeys is charon's view of the SAs' keys.
type fakeKeys struct {
	keys    map[mobike.SARef]XFRMKeys
	err     error
	fetches int
}

func (f *fakeKeys) XFRMKeys(_ context.Context, ref mobike.SARef) (XFRMKeys, error) {
	f.fetches++
	if f.err != nil {
		return XFRMKeys{}, f.err
	}
	k, ok := f.keys[ref]
	if !ok {
		return XFRMKeys{}, errors.New("IKE_SA not found")
	}
	return k, nil
}

var (
	xref    = mobike.SARef{Conn: "lab", UniqueID: 1}
	xLocal  = netip.MustParseAddr("10.1.0.2")
	xRemote = netip.MustParseAddr("10.3.0.2")
)

func esp(in, out uint32) XFRMChild {
	return XFRMChild{Proto: netlink.XFRM_PROTO_ESP, SPIIn: in, SPIOut: out}
}

func TestXFRMCountersSumsStates(t *testing.T) {
	k := &fakeKeys{keys: map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote, Children: []XFRMChild{
		esp(0xc1, 0xd1),
		{Proto: netlink.XFRM_PROTO_ESP, SPIIn: 0xc2, SPIOut: 0xd2, MarkIn: 7, MarkOut: 8},
	}}}}
	h := &fakeXFRM{states: map[string]netlink.XfrmStateStats{
		// Inbound: dst is our address; outbound: the peer's.
		xfrmID("10.1.0.2", 0xc1, netlink.XFRM_PROTO_ESP, 0): {Bytes: 1000, Packets: 10},
		xfrmID("10.3.0.2", 0xd1, netlink.XFRM_PROTO_ESP, 0): {Bytes: 2000, Packets: 20},
		xfrmID("10.1.0.2", 0xc2, netlink.XFRM_PROTO_ESP, 7): {Bytes: 1, Packets: 1},
		xfrmID("10.3.0.2", 0xd2, netlink.XFRM_PROTO_ESP, 8): {Bytes: 2, Packets: 2},
		// The same SPI towards another address is another state.
		xfrmID("10.3.0.2", 0xc1, netlink.XFRM_PROTO_ESP, 0): {Bytes: 1 << 40, Packets: 1 << 30},
	}}
	x := NewXFRMCounters(h, k, nil)
	for i := 0; i < 3; i++ {
		got, err := x.SACounters(context.Background(), xref)
		want := XFRMTotals{BytesIn: 1001, PacketsIn: 11, BytesOut: 2002, PacketsOut: 22, Set: mobike.ChildSet([]uint64{0xc1<<32 | 0xd1, 0xc2<<32 | 0xd2})}
		if err != nil || got != want {
			t.Fatalf("read %d: %+v %v, want %+v", i, got, err, want)
		}
	}
	if k.fetches != 1 || x.KeyFetches() != 1 {
		t.Errorf("keys fetched %d times, want once (cached)", k.fetches)
	}
	if len(h.gets) != 12 {
		t.Errorf("%d state reads for 3 readings of 2 CHILD_SAs, want 12", len(h.gets))
	}
}

// A rekey gives new SPIs (a MOBIKE move new addresses): the cached keys
// miss, the reader fetches them again and reads the new states at once.
func TestXFRMCountersRefreshAfterRekey(t *testing.T) {
	k := &fakeKeys{keys: map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote, Children: []XFRMChild{esp(0xc1, 0xd1)}}}}
	h := &fakeXFRM{states: map[string]netlink.XfrmStateStats{
		xfrmID("10.1.0.2", 0xc1, netlink.XFRM_PROTO_ESP, 0): {Packets: 10},
		xfrmID("10.3.0.2", 0xd1, netlink.XFRM_PROTO_ESP, 0): {Packets: 20},
	}}
	x := NewXFRMCounters(h, k, nil)
	if _, err := x.SACounters(context.Background(), xref); err != nil {
		t.Fatal(err)
	}
	// Rekeyed: the old states are gone, the new ones counted a little.
	k.keys[xref] = XFRMKeys{Local: xLocal, Remote: xRemote, Children: []XFRMChild{esp(0xc9, 0xd9)}}
	h.states = map[string]netlink.XfrmStateStats{
		xfrmID("10.1.0.2", 0xc9, netlink.XFRM_PROTO_ESP, 0): {Packets: 1},
		xfrmID("10.3.0.2", 0xd9, netlink.XFRM_PROTO_ESP, 0): {Packets: 2},
	}
	got, err := x.SACounters(context.Background(), xref)
	if err != nil || got.PacketsIn != 1 || got.PacketsOut != 2 || got.Set != mobike.ChildSet([]uint64{0xc9<<32 | 0xd9}) {
		t.Fatalf("after the rekey: %+v %v", got, err)
	}
	if k.fetches != 2 {
		t.Errorf("keys fetched %d times, want 2 (once more after the miss)", k.fetches)
	}
	// Moved (MOBIKE): new outer addresses, same SPIs.
	moved := netip.MustParseAddr("10.2.0.2")
	k.keys[xref] = XFRMKeys{Local: moved, Remote: xRemote, Children: []XFRMChild{esp(0xc9, 0xd9)}}
	h.states[xfrmID("10.2.0.2", 0xc9, netlink.XFRM_PROTO_ESP, 0)] = netlink.XfrmStateStats{Packets: 5}
	delete(h.states, xfrmID("10.1.0.2", 0xc9, netlink.XFRM_PROTO_ESP, 0))
	if got, err := x.SACounters(context.Background(), xref); err != nil || got.PacketsIn != 5 {
		t.Fatalf("after the move: %+v %v", got, err)
	}
}

func TestXFRMCountersErrors(t *testing.T) {
	keys := map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote, Children: []XFRMChild{esp(0xc1, 0xd1)}}}
	tests := []struct {
		name    string
		keys    map[mobike.SARef]XFRMKeys
		keyErr  error
		getErr  error
		is      error
		contain string
		fetches int
	}{
		// kernel-libipsec: charon has the SA, the kernel no state. Keys
		// just fetched are not fetched again.
		{"no state", keys, nil, nil, ErrNoXFRMState, "xfrm counters of lab#1: state 10.1.0.2 spi 000000c1: no XFRM state", 1},
		{"no installed CHILD_SA", map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote}}, nil, nil, ErrNoXFRMState, "no installed CHILD_SA", 1},
		{"keys fail", keys, context.DeadlineExceeded, nil, context.DeadlineExceeded, "xfrm counters of lab#1: keys: ", 1},
		{"netlink fails", keys, nil, unix.EPERM, unix.EPERM, "xfrm counters of lab#1: get state 10.1.0.2 spi 000000c1: ", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKeys{keys: tc.keys, err: tc.keyErr}
			x := NewXFRMCounters(&fakeXFRM{err: tc.getErr}, k, nil)
			_, err := x.SACounters(context.Background(), xref)
			if !errors.Is(err, tc.is) || !strings.Contains(fmt.Sprint(err), tc.contain) {
				t.Errorf("err %v, want %v containing %q", err, tc.is, tc.contain)
			}
			if k.fetches != tc.fetches {
				t.Errorf("%d key fetches, want %d", k.fetches, tc.fetches)
			}
		})
	}
}

// A failed read forgets the keys; keys unused for xfrmCacheIdle are
// forgotten too (the SA went or is no longer watched).
func TestXFRMCountersCacheExpiry(t *testing.T) {
	k := &fakeKeys{keys: map[mobike.SARef]XFRMKeys{xref: {Local: xLocal, Remote: xRemote, Children: []XFRMChild{esp(0xc1, 0xd1)}}}}
	h := &fakeXFRM{states: map[string]netlink.XfrmStateStats{
		xfrmID("10.1.0.2", 0xc1, netlink.XFRM_PROTO_ESP, 0): {},
		xfrmID("10.3.0.2", 0xd1, netlink.XFRM_PROTO_ESP, 0): {},
	}}
	now := time.Unix(1000, 0)
	x := NewXFRMCounters(h, k, func() time.Time { return now })
	read := func() {
		t.Helper()
		if _, err := x.SACounters(context.Background(), xref); err != nil {
			t.Fatal(err)
		}
	}
	read()
	now = now.Add(xfrmCacheIdle / 2)
	read()
	if k.fetches != 1 {
		t.Fatalf("%d fetches within the idle time", k.fetches)
	}
	other := mobike.SARef{Conn: "lab", UniqueID: 2}
	now = now.Add(xfrmCacheIdle + time.Second)
	_, _ = x.SACounters(context.Background(), other) // sweeps; fails (unknown)
	x.mu.Lock()
	n := len(x.cache)
	x.mu.Unlock()
	if n != 0 {
		t.Errorf("%d cache entries after the idle time and a failed read, want 0", n)
	}
	read()
	if k.fetches != 3 {
		t.Errorf("%d fetches, want 3 (again after the expiry)", k.fetches)
	}
}
