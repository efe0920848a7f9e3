package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vishvananda/netlink"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor"
	"github.com/mobiked/mobiked/vici"
)

// trafficSource is the traffic poller's counter source: the kernel's XFRM
// state statistics where the kernel has the SA's states (kernel ESP),
// charon's list-sas otherwise (kernel-libipsec), chosen per SA. Without an
// XFRM netlink socket it is list-sas alone. The closer releases the socket.
func trafficSource(c *vici.Client, log *slog.Logger) (vici.CounterReader, func()) {
	h, err := monitor.OpenXFRM()
	if err != nil {
		log.Info("traffic counters from charon only", "err", err)
		return c, func() {}
	}
	x := monitor.NewXFRMCounters(h, viciKeys{c}, nil)
	return vici.NewPreferredCounters(xfrmCounters{x}, c, vici.PreferOptions{
		Logger: log.With("component", "traffic"),
		// Only the kernel's "no such state" keeps an SA on charon's
		// counters; a failed key lookup (charon skips a busy SA: noblock)
		// falls back for one reading.
		Absent: func(err error) bool { return errors.Is(err, monitor.ErrNoXFRMState) },
	}), h.Close
}

// xfrmCounters adapts monitor.XFRMCounters to vici.CounterReader.
type xfrmCounters struct{ x *monitor.XFRMCounters }

func (r xfrmCounters) SACounters(ctx context.Context, ref mobike.SARef) (vici.Counters, error) {
	t, err := r.x.SACounters(ctx, ref)
	if err != nil {
		return vici.Counters{}, err
	}
	return vici.Counters{BytesIn: t.BytesIn, BytesOut: t.BytesOut, PacketsIn: t.PacketsIn, PacketsOut: t.PacketsOut, Source: mobike.CounterSourceXFRM, Set: t.Set}, nil
}

// viciKeys adapts vici.Client.SAKeys to monitor.XFRMKeySource.
type viciKeys struct {
	c interface {
		SAKeys(context.Context, mobike.SARef) (vici.SAKeys, error)
	}
}

func (v viciKeys) XFRMKeys(ctx context.Context, ref mobike.SARef) (monitor.XFRMKeys, error) {
	k, err := v.c.SAKeys(ctx, ref)
	if err != nil {
		return monitor.XFRMKeys{}, err
	}
	return xfrmKeys(k), nil
}

func xfrmKeys(k vici.SAKeys) monitor.XFRMKeys {
	out := monitor.XFRMKeys{Local: k.Local, Remote: k.Remote}
	for _, c := range k.Children {
		p := netlink.XFRM_PROTO_ESP
		if c.Protocol == "AH" {
			p = netlink.XFRM_PROTO_AH
		}
		out.Children = append(out.Children, monitor.XFRMChild{Proto: p, SPIIn: c.SPIIn, SPIOut: c.SPIOut, MarkIn: c.MarkIn, MarkOut: c.MarkOut})
	}
	return out
}
