package probe

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// netTransport is the real-socket Transport of one method.
//
// All pairs whose probes leave through one uplink share one socket per
// address family: the socket is bound to the uplink's device but not to an
// address, every probe carries its pair's source address in an IP_PKTINFO /
// IPV6_PKTINFO control message, and replies are demultiplexed by their
// (destination, source) addresses. Probes queued during one scheduler round
// leave in one sendmmsg per socket (Flush). Nobody waits on the sockets:
// the scheduler reads them (Poll, a non-blocking recvmmsg per socket) in its
// rounds, which it schedules when replies are due and always right before
// it judges a timeout, and the kernel stamps each packet on arrival
// (SO_TIMESTAMPNS), so RTTs are exact however late a reply is read. A socket
// thus costs no wake-up of its own, however many replies it receives: the
// sockets are deliberately kept out of Go's netpoller, which wakes a thread
// for every packet that arrives.
type netTransport struct {
	method mobike.ProbeMethod
	clock  Clock
	log    *slog.Logger
	hook   func(func() error) error

	stampKey  []byte
	stampPort uint16
	locEvery  int

	mu    sync.Mutex // guards socks and dirty
	socks map[sockKey]*sharedSock
	dirty []*sharedSock // sockets with queued probes
}

// sockKey names a shared socket: one per uplink and address family.
type sockKey struct {
	dev string
	idx int
	v6  bool
}

// pairKey is how replies are demultiplexed: (our address, the peer's).
type pairKey struct{ local, remote netip.Addr }

// sharedSock is one socket and the endpoints using it.
type sharedSock struct {
	t       *netTransport
	key     sockKey
	ifindex int            // the bound device (0 = none), put in every PKTINFO
	local   netip.AddrPort // the bound address (unspecified; STAMP: with the ephemeral port)
	icmpID  int
	ipHdr   bool // an IPv4 raw socket: received packets start with the IP header
	clock   Clock
	log     *slog.Logger
	refs    int // guarded by netTransport.mu

	mu    sync.Mutex // guards peers
	peers map[pairKey]endpoint

	// lmu guards the descriptor's life. release marks the socket closed
	// (no more sends or reads) and closes the descriptor, or leaves that to
	// the poll in progress: a poll delivers replies, which takes the
	// Manager's lock, while release runs under it, so release never waits
	// for a poll. Lock order: qmu → lmu, rmu → lmu; lmu is never held while
	// delivering.
	lmu     sync.Mutex
	fd      int    // the descriptor (setup; -1 when io is not a descriptor)
	io      sockIO // the system calls on it (a test replaces them)
	closed  bool
	polling bool

	qmu     sync.Mutex // guards the send queue and sendErr
	out     *mmsgBatch
	sendErr bool // the last flush failed (logged once per failure streak)

	rmu     sync.Mutex // guards in and readErr (one poller at a time)
	in      *mmsgBatch
	readErr bool
}

// sockIO is the system side of a shared socket: batched sends and reads
// and the close. fdIO is the real one; tests put packets in and take them
// out without a kernel.
type sockIO interface {
	send(b *mmsgBatch) error
	recv(b *mmsgBatch, flags int) (int, error)
	close() error
}

type fdIO int

func (fd fdIO) send(b *mmsgBatch) error                   { return b.send(int(fd)) }
func (fd fdIO) recv(b *mmsgBatch, flags int) (int, error) { return b.recv(int(fd), flags) }
func (fd fdIO) close() error                              { return unix.Close(int(fd)) }

func newSharedSock(t *netTransport, key sockKey, io sockIO) *sharedSock {
	return &sharedSock{t: t, key: key, fd: -1, io: io, clock: t.clock, log: t.log, peers: map[pairKey]endpoint{},
		out: newMmsgBatch(0, 0, 0), in: newMmsgBatch(readBatch, 2048, 128)}
}

func newNetTransport(m mobike.ProbeMethod, c Clock, log *slog.Logger, hook func(func() error) error) *netTransport {
	return &netTransport{method: m, clock: c, log: log, hook: hook, socks: map[sockKey]*sharedSock{}}
}

// bindDevice binds fd to the uplink device, so that probes leave through it
// whatever the routing table says (SO_BINDTODEVICE by name, else
// SO_BINDTOIFINDEX).
func bindDevice(fd int, dev string, idx int) error {
	var err error
	switch {
	case dev != "":
		err = unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
	case idx > 0:
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, idx)
	}
	if err != nil {
		return fmt.Errorf("bind to device %q (index %d): %w", dev, idx, err)
	}
	return nil
}

func (t *netTransport) Open(p Path, deliver func(Reply)) (Endpoint, error) {
	local := p.Pair.Local.Unmap()
	remote := p.Pair.Remote.Unmap()
	if !local.IsValid() || !remote.IsValid() || local.Is4() != remote.Is4() || local.Zone() != "" {
		return nil, fmt.Errorf("probe: open %s: invalid pair", p.Pair)
	}
	key := sockKey{dev: p.Uplink, idx: p.LinkIdx, v6: local.Is6()}
	if key.dev != "" {
		key.idx = 0 // the name binds; the index is only a fallback
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.socks[key]
	if s == nil {
		var err error
		s, err = t.listen(key)
		if err != nil {
			return nil, fmt.Errorf("probe: open %s via %s: %w", p.Pair, p.Uplink, err)
		}
		t.socks[key] = s
	}
	pk := pairKey{local: local, remote: remote}
	s.mu.Lock()
	_, busy := s.peers[pk]
	s.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("probe: open %s via %s: pair already open", p.Pair, p.Uplink)
	}
	var ep endpoint
	switch t.method {
	case mobike.ProbeICMP:
		ep = newICMPEndpoint(s, local, remote)
	case mobike.ProbeSTAMP:
		se := newSTAMPEndpoint(s, netip.AddrPortFrom(remote, t.stampPort), t.stampKey, t.locEvery, t.clock)
		se.local = netip.AddrPortFrom(local, s.local.Port())
		se.oob = pktinfo(local, s.ifindex)
		ep = se
	default:
		return nil, fmt.Errorf("probe: open %s: method %s has no socket transport", p.Pair, t.method)
	}
	s.refs++
	ep.setDeliver(deliver)
	ep.setClose(func() error { return t.release(s, pk) })
	s.mu.Lock()
	s.peers[pk] = ep
	s.mu.Unlock()
	return ep, nil
}

// endpoint is what the socket endpoints share.
type endpoint interface {
	Endpoint
	// handle checks a packet from the pair's remote address to its local
	// address, received at at, and delivers the reply it carries.
	handle(b []byte, at time.Time)
	setDeliver(func(Reply))
	setClose(func() error)
}

func (t *netTransport) listen(key sockKey) (*sharedSock, error) {
	domain, typ, proto := unix.AF_INET, unix.SOCK_DGRAM, 0
	if key.v6 {
		domain = unix.AF_INET6
	}
	if t.method == mobike.ProbeICMP {
		typ, proto = unix.SOCK_RAW, unix.IPPROTO_ICMP
		if key.v6 {
			proto = unix.IPPROTO_ICMPV6
		}
	}
	fd := -1
	open := func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if err := bindDevice(fd, key.dev, key.idx); err != nil {
			return err
		}
		if typ == unix.SOCK_DGRAM {
			var sa unix.Sockaddr = &unix.SockaddrInet4{}
			if key.v6 {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
					return fmt.Errorf("IPV6_V6ONLY: %w", err)
				}
				sa = &unix.SockaddrInet6{}
			}
			if err := unix.Bind(fd, sa); err != nil {
				return fmt.Errorf("bind: %w", err)
			}
		}
		return nil
	}
	var err error
	if t.hook != nil {
		err = t.hook(open)
	} else {
		err = open()
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, err
	}
	s := newSharedSock(t, key, fdIO(fd))
	s.fd = fd
	s.local = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if key.v6 {
		s.local = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			s.local = netip.AddrPortFrom(s.local.Addr(), uint16(a.Port))
		case *unix.SockaddrInet6:
			s.local = netip.AddrPortFrom(s.local.Addr(), uint16(a.Port))
		}
	}
	if t.method == mobike.ProbeICMP {
		s.icmpID = int(randUint16())
		s.ipHdr = !key.v6
	}
	if err := s.setOptions(t.method); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

// setOptions asks for kernel receive timestamps and the destination address
// of every packet, learns the bound device's index (for PKTINFO), and on
// ICMP sockets installs filters that queue only echo replies with the
// socket's ID.
func (s *sharedSock) setOptions(method mobike.ProbeMethod) error {
	f := s.fd
	if err := unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	var err error
	if s.key.v6 {
		err = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	} else {
		err = unix.SetsockoptInt(f, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}
	if err != nil {
		return fmt.Errorf("PKTINFO: %w", err)
	}
	if idx, err := unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX); err == nil {
		s.ifindex = idx
	}
	if method != mobike.ProbeICMP {
		return nil
	}
	if s.key.v6 {
		// ICMP6_FILTER: block every type but echo reply
		var flt unix.ICMPv6Filter
		for i := range flt.Data {
			flt.Data[i] = ^uint32(0)
		}
		flt.Data[icmp6EchoReply>>5] &^= 1 << (icmp6EchoReply & 31)
		if err := unix.SetsockoptICMPv6Filter(f, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &flt); err != nil {
			return fmt.Errorf("ICMP6_FILTER: %w", err)
		}
	}
	if err := attachEchoFilter(f, s.key.v6, uint16(s.icmpID)); err != nil {
		return fmt.Errorf("echo filter: %w", err)
	}
	return nil
}

func (t *netTransport) release(s *sharedSock, pk pairKey) error {
	s.mu.Lock()
	delete(s.peers, pk)
	s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return nil
	}
	delete(t.socks, s.key)
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.closed = true
	if s.polling || s.io == nil {
		return nil // the poll in progress closes it
	}
	err := s.io.close()
	s.io = nil
	if err != nil {
		return fmt.Errorf("probe: close socket of %s: %w", s.key.dev, err)
	}
	return nil
}

// enqueue queues one packet to to for the next Flush: encode appends it to
// the buffer it is given. It returns the packet's length.
func (s *sharedSock) enqueue(to netip.AddrPort, oob []byte, encode func([]byte) ([]byte, error)) (int, error) {
	s.qmu.Lock()
	s.lmu.Lock()
	closed := s.closed
	s.lmu.Unlock()
	if closed {
		s.qmu.Unlock()
		return 0, net.ErrClosed
	}
	b, err := encode(s.out.slot())
	if err != nil {
		s.qmu.Unlock()
		return 0, err
	}
	first := s.out.n == 0
	s.out.push(b, to, oob)
	s.qmu.Unlock()
	if first {
		s.t.mu.Lock()
		s.t.dirty = append(s.t.dirty, s)
		s.t.mu.Unlock()
	}
	return len(b), nil
}

// Flush sends every queued probe, one sendmmsg per socket. A probe the
// kernel refuses (address gone, link down) is lost: its timeout reports it.
func (t *netTransport) Flush() {
	t.mu.Lock()
	dirty := t.dirty
	t.dirty = nil
	t.mu.Unlock()
	for _, s := range dirty {
		s.flush()
	}
}

func (s *sharedSock) flush() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.out.n == 0 {
		return
	}
	s.lmu.Lock() // the descriptor stays open while it is held
	defer s.lmu.Unlock()
	if s.closed { // closed with probes queued: the prober is gone
		s.out.n = 0
		return
	}
	err := s.io.send(s.out)
	if err != nil && !s.sendErr {
		s.log.Warn("send probes", "ifname", s.key.dev, "err", err)
	}
	s.sendErr = err != nil
}

// readBatch is how many packets one recvmmsg may return.
const readBatch = 16

// Poll reads every reply queued on the transport's sockets, without
// blocking, and delivers them (Poller).
func (t *netTransport) Poll() {
	t.mu.Lock()
	socks := make([]*sharedSock, 0, len(t.socks))
	for _, s := range t.socks {
		socks = append(socks, s)
	}
	t.mu.Unlock()
	for _, s := range socks {
		s.poll()
	}
}

func (s *sharedSock) poll() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		return
	}
	s.polling = true
	io := s.io
	s.lmu.Unlock()
	defer func() {
		s.lmu.Lock()
		s.polling = false
		if s.closed && s.io != nil {
			s.io.close()
			s.io = nil
		}
		s.lmu.Unlock()
	}()
	for {
		n, err := io.recv(s.in, unix.MSG_DONTWAIT)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR && !s.readErr {
				s.log.Warn("probe socket read", "ifname", s.key.dev, "err", err)
			}
			s.readErr = err != unix.EAGAIN && err != unix.EINTR
			return
		}
		s.readErr = false
		s.dispatchBatch(s.in, n)
		if n < readBatch {
			return
		}
	}
}

// testHookDispatch, when set, runs before each received packet is handed
// on (a test widens the window in which a read is delivering).
var testHookDispatch func()

func (s *sharedSock) dispatchBatch(b *mmsgBatch, n int) {
	nowC, nowW := s.clock.Now(), time.Now()
	for i := range n {
		if testHookDispatch != nil {
			testHookDispatch()
		}
		s.dispatch(b.payload(i), b.control(i), b.source(i).Addr(), nowC, nowW)
	}
}

// dispatch finds the endpoint of a received packet and hands it the payload
// with its arrival time on the Manager's clock.
func (s *sharedSock) dispatch(b, oob []byte, src netip.Addr, nowC, nowW time.Time) {
	var dst netip.Addr
	if s.ipHdr {
		// IPv4 raw sockets read the IP header too
		if len(b) < 20 || b[0]>>4 != 4 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		b = b[ihl:]
	}
	ts, d := parseCmsgs(oob, s.key.v6)
	if !dst.IsValid() {
		dst = d
	}
	s.mu.Lock()
	ep := s.peers[pairKey{local: dst.Unmap(), remote: src.Unmap()}]
	s.mu.Unlock()
	if ep == nil {
		return
	}
	at := nowC
	if !ts.IsZero() {
		if age := nowW.Sub(ts); age >= 0 && age < time.Second {
			at = nowC.Add(-age)
		}
	}
	ep.handle(b, at)
}

// parseCmsgs returns the kernel receive timestamp (SCM_TIMESTAMPNS, wall
// clock) and the packet's destination address (PKTINFO).
func parseCmsgs(oob []byte, v6 bool) (ts time.Time, dst netip.Addr) {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return ts, dst
	}
	for _, c := range cms {
		switch {
		case c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_TIMESTAMPNS:
			switch len(c.Data) {
			case 16:
				ts = time.Unix(int64(binary.NativeEndian.Uint64(c.Data)), int64(binary.NativeEndian.Uint64(c.Data[8:])))
			case 8:
				ts = time.Unix(int64(int32(binary.NativeEndian.Uint32(c.Data))), int64(int32(binary.NativeEndian.Uint32(c.Data[4:]))))
			}
		case !v6 && c.Header.Level == unix.IPPROTO_IP && c.Header.Type == unix.IP_PKTINFO && len(c.Data) >= 12:
			// struct in_pktinfo { ifindex; spec_dst; addr (header destination) }
			dst = netip.AddrFrom4([4]byte(c.Data[8:12]))
		case v6 && c.Header.Level == unix.IPPROTO_IPV6 && c.Header.Type == unix.IPV6_PKTINFO && len(c.Data) >= 16:
			dst = netip.AddrFrom16([16]byte(c.Data[:16]))
		}
	}
	return ts, dst
}

// pktinfo is the control message that makes a packet leave with source
// address local (and, when ifindex is set, through that device).
func pktinfo(local netip.Addr, ifindex int) []byte {
	if local.Is4() {
		cm := ipv4.ControlMessage{Src: local.AsSlice(), IfIndex: ifindex}
		return cm.Marshal()
	}
	cm := ipv6.ControlMessage{Src: local.AsSlice(), IfIndex: ifindex}
	return cm.Marshal()
}

// ipHeaderLen is the IP header size of a probe packet (no options).
func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return 20
	}
	return 40
}
