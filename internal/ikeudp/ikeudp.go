// Package ikeudp is the UDP transport of an IKEv2 initiator: one socket per
// local address on an ephemeral port, bound to the uplink that holds the
// address (SO_BINDTODEVICE), sending with the source address set through
// IP_PKTINFO / IPV6_PKTINFO and reading the destination address of each
// datagram the same way. Messages to the peer's NAT-T port (anything but
// 500) carry the non-ESP marker (RFC 3948 §2.2); received datagrams are
// classified by their source port, NAT-T keepalives and UDP-encapsulated ESP
// are dropped.
//
// An ephemeral port keeps the initiator clear of an IKE daemon on the same
// host (charon binds 500 and 4500 on every address); a responder answers to
// the source port of each request, and IKE through NAT-T from a port other
// than 4500 is what a NAT produces anyway.
package ikeudp

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

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike/wire"
)

// IKEPort is the IKE port; every other destination port is NAT-T.
const IKEPort = 500

// maxDatagram bounds a received IKE message (no fragmentation is used).
const maxDatagram = 65535

// Datagram is one received IKE message.
type Datagram struct {
	Src, Dst netip.AddrPort // the IP/UDP headers as received
	Data     []byte         // the IKE message, non-ESP marker removed
	At       time.Time
}

// Config configures Listen.
type Config struct {
	// Locals are the local addresses to bind, one socket each.
	Locals []netip.Addr
	// NoBindDevice skips SO_BINDTODEVICE (it needs CAP_NET_RAW).
	NoBindDevice bool
	Log          *slog.Logger
}

type sock struct {
	local netip.AddrPort
	dev   string
	c     *net.UDPConn
	p4    *ipv4.PacketConn
	p6    *ipv6.PacketConn
}

// Transport is the set of sockets. Send may be called from any goroutine;
// datagrams arrive on Recv until Close.
type Transport struct {
	log   *slog.Logger
	socks map[netip.Addr]*sock
	recv  chan Datagram
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// Listen opens one UDP socket per local address. The sockets belong to the
// network namespace of the calling thread.
func Listen(cfg Config) (*Transport, error) {
	if len(cfg.Locals) == 0 {
		return nil, errors.New("ikeudp: no local address")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{log: log, socks: map[netip.Addr]*sock{}, recv: make(chan Datagram, 256), done: make(chan struct{})}
	for _, a := range cfg.Locals {
		a = a.Unmap()
		if _, dup := t.socks[a]; dup {
			continue
		}
		s, err := open(a, cfg.NoBindDevice, log)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.socks[a] = s
	}
	for _, s := range t.socks {
		t.wg.Add(1)
		go t.read(s)
	}
	return t, nil
}

// deviceOf names the interface that holds a.
func deviceOf(a netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("ikeudp: list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if n, ok := x.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("ikeudp: no interface holds %s", a)
}

func open(a netip.Addr, noBind bool, log *slog.Logger) (*sock, error) {
	dev, err := deviceOf(a)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	if !noBind && !a.IsLoopback() {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("bind to device %s: %w", dev, serr)
			}
			return nil
		}
	}
	network := "udp4"
	if a.Is6() {
		network = "udp6"
	}
	laddr := netip.AddrPortFrom(a, 0).String()
	pc, err := lc.ListenPacket(context.Background(), network, laddr)
	if err != nil && lc.Control != nil && errors.Is(err, unix.EPERM) {
		log.Warn("ikeudp: cannot bind to the uplink device (needs CAP_NET_RAW); routing decides the uplink", "local", a, "device", dev)
		pc, err = (&net.ListenConfig{}).ListenPacket(context.Background(), network, laddr)
	}
	if err != nil {
		return nil, fmt.Errorf("ikeudp: listen on %s: %w", a, err)
	}
	c := pc.(*net.UDPConn)
	s := &sock{local: c.LocalAddr().(*net.UDPAddr).AddrPort(), dev: dev, c: c}
	s.local = netip.AddrPortFrom(s.local.Addr().Unmap(), s.local.Port())
	if a.Is4() {
		s.p4 = ipv4.NewPacketConn(c)
		err = s.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		s.p6 = ipv6.NewPacketConn(c)
		err = s.p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("ikeudp: pktinfo on %s: %w", a, err)
	}
	log.Debug("ikeudp: bound", "local", s.local, "device", dev)
	return s, nil
}

// Local returns the address and port bound for local address a.
func (t *Transport) Local(a netip.Addr) (netip.AddrPort, bool) {
	s, ok := t.socks[a.Unmap()]
	if !ok {
		return netip.AddrPort{}, false
	}
	return s.local, true
}

// Device returns the interface the socket of a is bound to.
func (t *Transport) Device(a netip.Addr) string {
	if s, ok := t.socks[a.Unmap()]; ok {
		return s.dev
	}
	return ""
}

// ErrNoSocket is returned by Send for a source this transport did not bind.
var ErrNoSocket = errors.New("ikeudp: no socket for source")

// Send sends msg from src (a bound address and port) to dst, with the
// non-ESP marker unless dst is the IKE port.
func (t *Transport) Send(src, dst netip.AddrPort, msg []byte) error {
	s, ok := t.socks[src.Addr().Unmap()]
	if !ok || s.local.Port() != src.Port() {
		return fmt.Errorf("%w %s", ErrNoSocket, src)
	}
	b := msg
	if dst.Port() != IKEPort {
		b = wire.AddNonESPMarker(msg)
	}
	to := net.UDPAddrFromAddrPort(dst)
	var err error
	if s.p4 != nil {
		_, err = s.p4.WriteTo(b, &ipv4.ControlMessage{Src: s.local.Addr().AsSlice()}, to)
	} else {
		_, err = s.p6.WriteTo(b, &ipv6.ControlMessage{Src: s.local.Addr().AsSlice()}, to)
	}
	if err != nil {
		return fmt.Errorf("ikeudp: send %s->%s: %w", src, dst, err)
	}
	return nil
}

// Recv delivers received IKE messages; it is closed by Close.
func (t *Transport) Recv() <-chan Datagram { return t.recv }

func (t *Transport) read(s *sock) {
	defer t.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		var (
			n   int
			src net.Addr
			dst netip.Addr
			err error
		)
		if s.p4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = s.p4.ReadFrom(buf)
			if cm != nil {
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		} else {
			var cm *ipv6.ControlMessage
			n, cm, src, err = s.p6.ReadFrom(buf)
			if cm != nil {
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		}
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("ikeudp: read", "local", s.local, "err", err)
			continue
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		data := buf[:n]
		if from.Port() != IKEPort {
			if data, err = wire.StripNonESPMarker(data); err != nil {
				continue // keepalive or UDP-encapsulated ESP
			}
		}
		to := s.local
		if dst.IsValid() {
			to = netip.AddrPortFrom(dst.Unmap(), s.local.Port())
		}
		d := Datagram{Src: from, Dst: to, Data: append([]byte(nil), data...), At: time.Now()}
		select {
		case t.recv <- d:
		case <-t.done:
			return
		}
	}
}

// Close closes the sockets and the Recv channel.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.done)
		for _, s := range t.socks {
			s.c.Close()
		}
		t.wg.Wait()
		close(t.recv)
	})
	return nil
}
