package main

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor"
	"github.com/mobiked/mobiked/vici"
)

type keysFake struct {
	k   vici.SAKeys
	err error
}

func (f keysFake) SAKeys(context.Context, mobike.SARef) (vici.SAKeys, error) { return f.k, f.err }

// charon's keys reach the netlink reader unchanged, AH as AH; the reader's
// totals reach the poller tagged as XFRM readings.
func TestTrafficSourceAdapters(t *testing.T) {
	l, r := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.3.0.2")
	k := vici.SAKeys{Local: l, Remote: r, Children: []vici.ChildKeys{
		{Protocol: "ESP", SPIIn: 1, SPIOut: 2, MarkIn: 3, MarkOut: 4},
		{Protocol: "AH", SPIIn: 5, SPIOut: 6},
	}}
	got, err := viciKeys{keysFake{k: k}}.XFRMKeys(context.Background(), mobike.SARef{Conn: "lab", UniqueID: 1})
	want := []monitor.XFRMChild{
		{Proto: netlink.XFRM_PROTO_ESP, SPIIn: 1, SPIOut: 2, MarkIn: 3, MarkOut: 4},
		{Proto: netlink.XFRM_PROTO_AH, SPIIn: 5, SPIOut: 6},
	}
	if err != nil || got.Local != l || got.Remote != r || len(got.Children) != 2 || got.Children[0] != want[0] || got.Children[1] != want[1] {
		t.Errorf("keys %+v %v, want %+v", got, err, want)
	}
	if _, err := (viciKeys{keysFake{err: vici.ErrSANotFound}}).XFRMKeys(context.Background(), mobike.SARef{}); !errors.Is(err, vici.ErrSANotFound) {
		t.Errorf("error lost: %v", err)
	}
	h := stateFake{Bytes: 100, Packets: 1}
	x := xfrmCounters{monitor.NewXFRMCounters(h, viciKeys{keysFake{k: vici.SAKeys{Local: l, Remote: r, Children: k.Children[:1]}}}, nil)}
	n, err := x.SACounters(context.Background(), mobike.SARef{Conn: "lab", UniqueID: 1})
	if err != nil || n != (vici.Counters{BytesIn: 100, BytesOut: 100, PacketsIn: 1, PacketsOut: 1, Source: mobike.CounterSourceXFRM, Set: mobike.ChildSet([]uint64{1<<32 | 2})}) {
		t.Errorf("counters %+v %v", n, err)
	}
}

// stateFake has every state, with the same statistics.
type stateFake netlink.XfrmStateStats

func (s stateFake) XfrmStateGet(q *netlink.XfrmState) (*netlink.XfrmState, error) {
	return &netlink.XfrmState{Dst: q.Dst, Spi: q.Spi, Proto: q.Proto, Statistics: netlink.XfrmStateStats(s)}, nil
}
