package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// In-band evidence from the kernel (issue 16 item 3): where the kernel does
// ESP, each CHILD_SA is two XFRM states whose statistics count the bytes and
// packets that went through; one XFRM_MSG_GETSA per state reads them,
// without going through charon. A state's ID is (destination, SPI,
// protocol): the inbound one is (our address, spi-in), the outbound one (the
// peer's address, spi-out); UDP encapsulation is an attribute of the state
// and does not change the ID. The SPIs and addresses come from charon
// (XFRMKeySource, VICI list-sas), cached per IKE_SA and fetched again when a
// state is missing: a rekey gives new SPIs, a MOBIKE move new addresses.

// XFRMStateGetter reads one XFRM state by its ID (netlink.Handle.XfrmStateGet).
type XFRMStateGetter interface {
	XfrmStateGet(*netlink.XfrmState) (*netlink.XfrmState, error)
}

// XFRMChild is the ID of one CHILD_SA's two states.
type XFRMChild struct {
	Proto           netlink.Proto // XFRM_PROTO_ESP or XFRM_PROTO_AH
	SPIIn, SPIOut   uint32
	MarkIn, MarkOut uint32 // 0: none
}

// XFRMKeys are an IKE_SA's installed CHILD_SAs; Local and Remote are the
// IKE_SA's hosts, the states' outer addresses.
type XFRMKeys struct {
	Local, Remote netip.Addr
	Children      []XFRMChild
}

// XFRMKeySource gives an IKE_SA's keys (charon's list-sas).
type XFRMKeySource interface {
	XFRMKeys(ctx context.Context, ref mobike.SARef) (XFRMKeys, error)
}

// XFRMTotals are the statistics of an IKE_SA's states, summed; Set
// identifies the states (mobike.ChildSet of their SPIs).
type XFRMTotals struct {
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
	Set                                      uint64
}

// ErrNoXFRMState: the kernel has no state for a CHILD_SA of the IKE_SA
// (ESP in user space, as with kernel-libipsec), or the IKE_SA has no
// installed CHILD_SA.
var ErrNoXFRMState = errors.New("no XFRM state")

// OpenXFRM opens a netlink XFRM socket in the current network namespace
// (needs CAP_NET_ADMIN; fails where the kernel has no xfrm_user).
func OpenXFRM() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("xfrm netlink handle: %w", err)
	}
	return h, nil
}

// XFRMCounters reads IKE_SAs' counters from the kernel's XFRM states.
type XFRMCounters struct {
	h    XFRMStateGetter
	keys XFRMKeySource
	now  func() time.Time

	mu      sync.Mutex
	cache   map[mobike.SARef]*xfrmEntry
	sweepAt time.Time
	fetches uint64
}

type xfrmEntry struct {
	keys XFRMKeys
	used time.Time
}

// xfrmCacheIdle: an SA's keys not used for this long are forgotten.
const xfrmCacheIdle = 10 * time.Minute

// NewXFRMCounters reads states through h, their keys from keys; now is
// the clock for the cache's expiry (nil = time.Now).
func NewXFRMCounters(h XFRMStateGetter, keys XFRMKeySource, now func() time.Time) *XFRMCounters {
	if now == nil {
		now = time.Now
	}
	return &XFRMCounters{h: h, keys: keys, now: now, cache: map[mobike.SARef]*xfrmEntry{}}
}

// KeyFetches returns how often the keys were fetched from the key source.
func (x *XFRMCounters) KeyFetches() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.fetches
}

// SACounters reads the statistics of ref's states. A missing state makes
// it fetch the keys again and retry once; still missing: ErrNoXFRMState.
func (x *XFRMCounters) SACounters(ctx context.Context, ref mobike.SARef) (XFRMTotals, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.now()
	x.sweep(now)
	e, fresh := x.cache[ref], false
	if e == nil {
		k, err := x.fetch(ctx, ref)
		if err != nil {
			return XFRMTotals{}, err
		}
		e, fresh = &xfrmEntry{keys: k}, true
		x.cache[ref] = e
	}
	e.used = now
	t, err := x.read(e.keys)
	if errors.Is(err, ErrNoXFRMState) && !fresh {
		k, ferr := x.fetch(ctx, ref)
		if ferr != nil {
			delete(x.cache, ref)
			return XFRMTotals{}, ferr
		}
		e.keys = k
		t, err = x.read(k)
	}
	if err != nil {
		delete(x.cache, ref)
		return XFRMTotals{}, fmt.Errorf("xfrm counters of %s: %w", ref, err)
	}
	return t, nil
}

func (x *XFRMCounters) fetch(ctx context.Context, ref mobike.SARef) (XFRMKeys, error) {
	x.fetches++
	k, err := x.keys.XFRMKeys(ctx, ref)
	if err != nil {
		return XFRMKeys{}, fmt.Errorf("xfrm counters of %s: keys: %w", ref, err)
	}
	return k, nil
}

// read sums the statistics of k's states.
func (x *XFRMCounters) read(k XFRMKeys) (XFRMTotals, error) {
	var t XFRMTotals
	if len(k.Children) == 0 {
		return t, fmt.Errorf("no installed CHILD_SA: %w", ErrNoXFRMState)
	}
	if !k.Local.IsValid() || !k.Remote.IsValid() {
		return t, fmt.Errorf("hosts %v, %v: %w", k.Local, k.Remote, ErrNoXFRMState)
	}
	ids := make([]uint64, 0, len(k.Children))
	for _, c := range k.Children {
		ids = append(ids, uint64(c.SPIIn)<<32|uint64(c.SPIOut))
		in, err := x.get(k.Local, c.Proto, c.SPIIn, c.MarkIn)
		if err != nil {
			return XFRMTotals{}, err
		}
		out, err := x.get(k.Remote, c.Proto, c.SPIOut, c.MarkOut)
		if err != nil {
			return XFRMTotals{}, err
		}
		t.BytesIn += in.Bytes
		t.PacketsIn += in.Packets
		t.BytesOut += out.Bytes
		t.PacketsOut += out.Packets
	}
	t.Set = mobike.ChildSet(ids)
	return t, nil
}

// get reads one state's statistics.
func (x *XFRMCounters) get(dst netip.Addr, proto netlink.Proto, spi, mark uint32) (netlink.XfrmStateStats, error) {
	q := &netlink.XfrmState{Dst: net.IP(dst.Unmap().AsSlice()), Proto: proto, Spi: int(spi)}
	if mark != 0 {
		// The kernel matches (mark & state's mask) == state's value: the
		// value with a full mask finds the state whatever its mask.
		q.Mark = &netlink.XfrmMark{Value: mark, Mask: 0xffffffff}
	}
	s, err := x.h.XfrmStateGet(q)
	if err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			return netlink.XfrmStateStats{}, fmt.Errorf("state %s spi %08x: %w", dst, spi, ErrNoXFRMState)
		}
		return netlink.XfrmStateStats{}, fmt.Errorf("get state %s spi %08x: %w", dst, spi, err)
	}
	return s.Statistics, nil
}

// sweep forgets, once per xfrmCacheIdle, the keys not used for that long;
// x.mu is held.
func (x *XFRMCounters) sweep(now time.Time) {
	if now.Before(x.sweepAt) {
		return
	}
	x.sweepAt = now.Add(xfrmCacheIdle)
	for ref, e := range x.cache {
		if now.Sub(e.used) > xfrmCacheIdle {
			delete(x.cache, ref)
		}
	}
}
