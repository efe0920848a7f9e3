package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// netTransport is the real-socket Transport of one method. Pairs with the
// same source address and uplink share one socket; replies are demultiplexed
// by the remote address (and, inside an endpoint, by sequence and nonce).
type netTransport struct {
	method mobike.ProbeMethod
	clock  Clock
	log    *slog.Logger
	hook   func(func() error) error

	stampKey  []byte
	stampPort uint16
	locEvery  int

	readers sync.WaitGroup // socket reader goroutines

	mu    sync.Mutex // guards socks
	socks map[sockKey]*sharedSock
}

type sockKey struct {
	local netip.Addr
	dev   string
	idx   int
}

// sharedSock is one socket and the endpoints using it.
type sharedSock struct {
	key    sockKey
	conn   net.PacketConn
	local  netip.AddrPort // bound address (STAMP: with the ephemeral port)
	icmpID int
	clock  Clock
	refs   int // guarded by netTransport.mu

	mu    sync.Mutex // guards peers
	peers map[netip.Addr]func(b []byte)
}

func newNetTransport(m mobike.ProbeMethod, c Clock, log *slog.Logger, hook func(func() error) error) *netTransport {
	return &netTransport{method: m, clock: c, log: log, hook: hook, socks: map[sockKey]*sharedSock{}}
}

// bindControl returns a net.ListenConfig Control that binds the socket to the
// uplink device, so that probes leave through it whatever the routing table
// says (SO_BINDTODEVICE by name, else SO_BINDTOIFINDEX).
func bindControl(dev string, idx int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			switch {
			case dev != "":
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
			case idx > 0:
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, idx)
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("bind to device %q (index %d): %w", dev, idx, serr)
		}
		return nil
	}
}

func (t *netTransport) Open(p Path, deliver func(Reply)) (Endpoint, error) {
	local := p.Pair.Local.Unmap()
	remote := p.Pair.Remote.Unmap()
	if !local.IsValid() || !remote.IsValid() || local.Is4() != remote.Is4() {
		return nil, fmt.Errorf("probe: open %s: invalid pair", p.Pair)
	}
	key := sockKey{local: local, dev: p.Uplink, idx: p.LinkIdx}
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
		t.readers.Add(1)
		go t.read(s)
	}
	s.refs++
	var ep endpoint
	switch t.method {
	case mobike.ProbeICMP:
		ep = &icmpEndpoint{sock: s, remote: remote}
	case mobike.ProbeSTAMP:
		ep = newSTAMPEndpoint(s, netip.AddrPortFrom(remote, t.stampPort), t.stampKey, t.locEvery, t.clock)
	default:
		return nil, fmt.Errorf("probe: open %s: method %s has no socket transport", p.Pair, t.method)
	}
	ep.setDeliver(deliver)
	ep.setClose(func() error { return t.release(s, remote) })
	s.mu.Lock()
	s.peers[remote] = ep.handle
	s.mu.Unlock()
	return ep, nil
}

// endpoint is what the socket endpoints share.
type endpoint interface {
	Endpoint
	handle(b []byte)
	setDeliver(func(Reply))
	setClose(func() error)
}

func (t *netTransport) listen(key sockKey) (*sharedSock, error) {
	lc := net.ListenConfig{Control: bindControl(key.dev, key.idx)}
	var network, addr string
	v4 := key.local.Is4()
	switch t.method {
	case mobike.ProbeICMP:
		network, addr = "ip6:ipv6-icmp", key.local.String()
		if v4 {
			network = "ip4:icmp"
		}
	default:
		network, addr = "udp6", netip.AddrPortFrom(key.local, 0).String()
		if v4 {
			network = "udp4"
		}
	}
	var conn net.PacketConn
	open := func() error {
		var err error
		conn, err = lc.ListenPacket(context.Background(), network, addr)
		return err
	}
	var err error
	if t.hook != nil {
		err = t.hook(open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, err
	}
	s := &sharedSock{key: key, conn: conn, clock: t.clock, peers: map[netip.Addr]func([]byte){}}
	switch a := conn.LocalAddr().(type) {
	case *net.UDPAddr:
		s.local = a.AddrPort()
	default:
		s.local = netip.AddrPortFrom(key.local, 0)
	}
	if t.method == mobike.ProbeICMP {
		s.icmpID = int(randUint16())
		if !v4 {
			setICMPv6Filter(conn)
		}
	}
	return s, nil
}

func (t *netTransport) release(s *sharedSock, remote netip.Addr) error {
	s.mu.Lock()
	delete(s.peers, remote)
	s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return nil
	}
	delete(t.socks, s.key)
	return s.conn.Close() // the reader exits; wait() waits for it
}

func (t *netTransport) read(s *sharedSock) {
	defer t.readers.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.log.Warn("probe socket read", "ifname", s.key.dev, "err", err)
			}
			return
		}
		var src netip.Addr
		switch a := from.(type) {
		case *net.IPAddr:
			src, _ = netip.AddrFromSlice(a.IP)
		case *net.UDPAddr:
			src, _ = netip.AddrFromSlice(a.IP)
		}
		s.mu.Lock()
		h := s.peers[src.Unmap()]
		s.mu.Unlock()
		if h != nil {
			h(buf[:n])
		}
	}
}

// wait waits for every reader goroutine; call it after every endpoint is
// closed.
func (t *netTransport) wait() { t.readers.Wait() }

func (s *sharedSock) now() time.Time { return s.clock.Now() }

// ipHeaderLen is the IP header size of a probe packet (no options).
func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return 20
	}
	return 40
}
