package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ReflectorOptions configure a STAMP Session-Reflector. Zero values take the
// documented defaults.
type ReflectorOptions struct {
	Logger *slog.Logger // default: discard
	Clock  Clock        // default: RealClock()
	// Key selects authenticated mode (HMAC-SHA-256); requests without a
	// valid HMAC under it are dropped silently. Empty = unauthenticated.
	Key []byte
	// Rate is the per-source reply rate in packets per second (IPv6 sources
	// grouped by /64). Default 50.
	Rate float64
	// Burst is the per-source bucket size. Default 20.
	Burst int
	// MaxSources caps the rate limiter's table. Default 4096.
	MaxSources int
	// HideLocation answers Location TLVs with zero addresses and ports
	// (policy "do not report").
	HideLocation bool
}

// ReflectorStats counts what the reflector did.
type ReflectorStats struct {
	Received   uint64
	Replied    uint64 // replies the kernel accepted
	SendErrors uint64 // replies the kernel refused
	// Drops, in the order the checks run: a looping or impossible source, a
	// multicast or broadcast destination, a request shorter than the base
	// packet, a failed authentication, the per-source rate limit.
	DroppedLoops, DroppedDest, DroppedShort, DroppedAuth, DroppedRate uint64
}

// Reflector is a stateless STAMP Session-Reflector (RFC 8762 §4.3, RFC 8972
// Location TLV). It never replies with more octets than the request, drops
// requests that fail authentication, and rate-limits each source.
type Reflector struct {
	o   ReflectorOptions
	log *slog.Logger

	// ifaceAddrs lists the host's interface addresses (directed broadcasts
	// are computed from them); a test replaces it.
	ifaceAddrs func() ([]net.Addr, error)

	mu      sync.Mutex     // guards the fields below
	lim     *sourceLimiter // replies per source: charged only by authentic requests
	authLog *sourceLimiter // failed-authentication warnings per source
	bcast   bcastCache

	received, replied, sendErr                        atomic.Uint64
	dropAuth, dropRate, dropShort, dropLoop, dropDest atomic.Uint64
}

// bcastCache holds the IPv4 directed-broadcast addresses of the host's
// interfaces, re-read at most every bcastRefresh.
type bcastCache struct {
	at    time.Time
	addrs map[netip.Addr]bool
}

const bcastRefresh = 5 * time.Second

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// NewReflector checks o and returns a Reflector.
func NewReflector(o ReflectorOptions) (*Reflector, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.Rate == 0 {
		o.Rate = 50
	}
	if o.Burst == 0 {
		o.Burst = 20
	}
	if o.MaxSources == 0 {
		o.MaxSources = 4096
	}
	if o.Rate < 0 || o.Burst < 0 || o.MaxSources < 0 {
		return nil, errors.New("stamp: reflector: negative rate, burst or table size")
	}
	o.Key = bytes.Clone(o.Key)
	return &Reflector{o: o, log: o.Logger.With("component", "stamp-reflector"),
		ifaceAddrs: net.InterfaceAddrs,
		lim:        newSourceLimiter(o.Rate, o.Burst, o.MaxSources),
		// one warning per source and minute, for at most 256 sources
		authLog: newSourceLimiter(1.0/60, 1, 256)}, nil
}

func (r *Reflector) mode() STAMPMode {
	if len(r.o.Key) > 0 {
		return STAMPAuthenticated
	}
	return STAMPUnauthenticated
}

// Stats returns the counters.
func (r *Reflector) Stats() ReflectorStats {
	return ReflectorStats{
		Received: r.received.Load(), Replied: r.replied.Load(), SendErrors: r.sendErr.Load(),
		DroppedAuth: r.dropAuth.Load(), DroppedRate: r.dropRate.Load(),
		DroppedShort: r.dropShort.Load(), DroppedLoops: r.dropLoop.Load(), DroppedDest: r.dropDest.Load(),
	}
}

// ListenAndServe listens on the UDP address addr (e.g. ":862", "[::]:862")
// and serves until ctx is done.
func (r *Reflector) ListenAndServe(ctx context.Context, addr string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("stamp: reflector: listen %s: %w", addr, err)
	}
	defer c.Close()
	return r.Serve(ctx, c)
}

// Serve answers requests arriving on conn until ctx is done (it then returns
// ctx.Err()) or conn fails. On a *net.UDPConn it reads the TTL and the
// destination address of each request (for the Ses-Sender TTL field and the
// Location TLV) and replies from that destination address. conn is not closed.
func (r *Reflector) Serve(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	local, _ := conn.LocalAddr().(*net.UDPAddr)
	var rw pktRW = plainRW{conn}
	if uc, ok := conn.(*net.UDPConn); ok && local != nil {
		if local.AddrPort().Addr().Unmap().Is4() {
			p := ipv4.NewPacketConn(uc)
			if err := p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err == nil {
				rw = v4RW{p}
			}
		} else {
			p := ipv6.NewPacketConn(uc)
			if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err == nil {
				rw = v6RW{p}
			}
		}
	}
	var localAP netip.AddrPort
	if local != nil {
		localAP = local.AddrPort()
	}
	buf := make([]byte, 65536)
	for {
		n, info, err := rw.read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("stamp: reflector: read: %w", err)
		}
		r.received.Add(1)
		if !info.dst.IsValid() {
			info.dst = localAP.Addr()
		}
		reply, ok := r.process(buf[:n], info, localAP.Port())
		if !ok {
			continue
		}
		if err := rw.write(reply, info); err != nil {
			r.sendErr.Add(1)
			r.log.Debug("reply", "err", err)
			continue
		}
		r.replied.Add(1)
	}
}

// rxInfo is what the socket told about one request.
type rxInfo struct {
	src     netip.AddrPort
	dst     netip.Addr
	ifIndex int
	ttl     int
}

// process applies the reflector rules to one request; ok=false = no reply.
// The checks run cheapest first, and nothing a forger can send spends an
// authentic sender's reply tokens: in authenticated mode the HMAC is verified
// before the rate limiter is charged, and failed authentications are charged
// to a bucket of their own, which only paces the warning they log.
func (r *Reflector) process(req []byte, info rxInfo, port uint16) ([]byte, bool) {
	now := r.o.Clock.Now()
	src := info.src.Addr().Unmap()
	// loops: another reflector (same port) or a source that cannot be a sender
	if info.src.Port() == 0 || info.src.Port() == port || info.src.Port() == STAMPPort ||
		src.IsMulticast() || src.IsUnspecified() || src == limitedBroadcast {
		r.dropLoop.Add(1)
		return nil, false
	}
	// a request to a group or broadcast address would make every reflector
	// on the link answer one packet
	if r.groupDest(info.dst.Unmap(), now) {
		r.dropDest.Add(1)
		return nil, false
	}
	mode := r.mode()
	if len(req) < mode.BaseLen() {
		r.dropShort.Add(1) // never answer with more octets than the request
		return nil, false
	}
	if mode == STAMPAuthenticated {
		if _, err := DecodeSender(req, mode, r.o.Key); err != nil {
			r.dropAuth.Add(1)
			r.mu.Lock()
			warn := r.authLog.allow(src, now)
			r.mu.Unlock()
			if warn {
				r.log.Warn("request failed authentication (wrong key, or forged); warnings from this source paused for a minute",
					"src", info.src, "err", err)
			}
			return nil, false
		}
	}
	r.mu.Lock()
	ok := r.lim.allow(src, now)
	r.mu.Unlock()
	if !ok {
		r.dropRate.Add(1)
		return nil, false
	}
	reply, err := Reflect(req, ReflectParams{
		Mode: mode, Key: r.o.Key,
		RxTime: NTPFromTime(now), TxTime: NTPFromTime(r.o.Clock.Now()),
		ErrorEstimate: defaultErrorEstimate, TTL: uint8(max(info.ttl, 0)),
		Src: info.src, Dst: netip.AddrPortFrom(info.dst, port), HideLocation: r.o.HideLocation,
	})
	if err != nil {
		r.dropAuth.Add(1)
		return nil, false
	}
	return reply, true
}

// groupDest reports whether dst is a multicast, the limited broadcast or one
// of the host's IPv4 directed-broadcast addresses. An invalid or unspecified
// dst (the socket did not say) is not.
func (r *Reflector) groupDest(dst netip.Addr, now time.Time) bool {
	switch {
	case !dst.IsValid() || dst.IsUnspecified():
		return false
	case dst.IsMulticast() || dst == limitedBroadcast:
		return true
	case !dst.Is4():
		return false // IPv6 has no broadcast
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bcast.addrs == nil || now.Sub(r.bcast.at) >= bcastRefresh || now.Before(r.bcast.at) {
		r.bcast = bcastCache{at: now, addrs: directedBroadcasts(r.ifaceAddrs)}
	}
	return r.bcast.addrs[dst]
}

// directedBroadcasts computes the IPv4 broadcast address of every interface
// prefix shorter than /31 (RFC 3021: /31 and /32 have none).
func directedBroadcasts(list func() ([]net.Addr, error)) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := list()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip4, ones := ipn.IP.To4(), 0
		if ip4 == nil {
			continue
		}
		ones, bits := ipn.Mask.Size()
		if bits != 32 || ones >= 31 {
			continue
		}
		var b [4]byte
		for i := range b {
			b[i] = ip4[i] | ^ipn.Mask[i]
		}
		out[netip.AddrFrom4(b)] = true
	}
	return out
}

type pktRW interface {
	read(b []byte) (int, rxInfo, error)
	write(b []byte, to rxInfo) error
}

type plainRW struct{ c net.PacketConn }

func (p plainRW) read(b []byte) (int, rxInfo, error) {
	n, from, err := p.c.ReadFrom(b)
	var info rxInfo
	if ua, ok := from.(*net.UDPAddr); ok {
		info.src = ua.AddrPort()
	}
	return n, info, err
}

func (p plainRW) write(b []byte, to rxInfo) error {
	_, err := p.c.WriteTo(b, net.UDPAddrFromAddrPort(to.src))
	return err
}

type v4RW struct{ p *ipv4.PacketConn }

func (p v4RW) read(b []byte) (int, rxInfo, error) {
	n, cm, from, err := p.p.ReadFrom(b)
	var info rxInfo
	if ua, ok := from.(*net.UDPAddr); ok {
		info.src = ua.AddrPort()
	}
	if cm != nil {
		info.dst, _ = netip.AddrFromSlice(cm.Dst)
		info.dst = info.dst.Unmap()
		info.ifIndex, info.ttl = cm.IfIndex, cm.TTL
	}
	return n, info, err
}

func (p v4RW) write(b []byte, to rxInfo) error {
	var cm *ipv4.ControlMessage
	if to.dst.IsValid() && !to.dst.IsMulticast() {
		cm = &ipv4.ControlMessage{Src: to.dst.AsSlice()} // reply from the address the request was sent to
	}
	_, err := p.p.WriteTo(b, cm, net.UDPAddrFromAddrPort(to.src))
	return err
}

type v6RW struct{ p *ipv6.PacketConn }

func (p v6RW) read(b []byte) (int, rxInfo, error) {
	n, cm, from, err := p.p.ReadFrom(b)
	var info rxInfo
	if ua, ok := from.(*net.UDPAddr); ok {
		info.src = ua.AddrPort()
	}
	if cm != nil {
		info.dst, _ = netip.AddrFromSlice(cm.Dst)
		info.ifIndex, info.ttl = cm.IfIndex, cm.HopLimit
	}
	return n, info, err
}

func (p v6RW) write(b []byte, to rxInfo) error {
	var cm *ipv6.ControlMessage
	if to.dst.IsValid() && !to.dst.IsMulticast() {
		cm = &ipv6.ControlMessage{Src: to.dst.AsSlice()}
		if to.dst.IsLinkLocalUnicast() {
			cm.IfIndex = to.ifIndex
		}
	}
	_, err := p.p.WriteTo(b, cm, net.UDPAddrFromAddrPort(to.src))
	return err
}
