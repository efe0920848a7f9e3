package probe

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// icmpEndpoint sends ICMP echo requests carrying the probe nonce as payload;
// a reply counts only when it echoes the same ID, sequence and payload.
type icmpEndpoint struct {
	sock    *sharedSock
	remote  netip.Addr
	deliver func(Reply)
	close   func() error
}

// icmpNonceLen is the echo payload: 16 random octets per probe.
const icmpNonceLen = 16

func (e *icmpEndpoint) NonceLen() int            { return icmpNonceLen }
func (e *icmpEndpoint) setDeliver(f func(Reply)) { e.deliver = f }
func (e *icmpEndpoint) setClose(f func() error)  { e.close = f }
func (e *icmpEndpoint) Close() error             { return e.close() }

func (e *icmpEndpoint) Send(seq uint32, nonce []byte) (int, error) {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if e.remote.Is6() {
		typ = ipv6.ICMPTypeEchoRequest
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: e.sock.icmpID, Seq: int(uint16(seq)), Data: nonce}}
	b, err := msg.Marshal(nil) // the kernel fills the ICMPv6 checksum
	if err != nil {
		return 0, fmt.Errorf("probe: icmp marshal: %w", err)
	}
	if _, err := e.sock.conn.WriteTo(b, &net.IPAddr{IP: e.remote.AsSlice()}); err != nil {
		return 0, fmt.Errorf("probe: icmp send to %s: %w", e.remote, err)
	}
	return ipHeaderLen(e.remote) + len(b), nil
}

func (e *icmpEndpoint) handle(b []byte) {
	proto := 1 // ICMP
	if e.remote.Is6() {
		proto = 58 // ICMPv6
	}
	m, err := icmp.ParseMessage(proto, b)
	if err != nil {
		return
	}
	if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
		return
	}
	echo, ok := m.Body.(*icmp.Echo)
	if !ok || echo.ID != e.sock.icmpID {
		return
	}
	e.deliver(Reply{Seq: uint32(echo.Seq), Nonce: bytes.Clone(echo.Data), At: e.sock.now()})
}

func setICMPv6Filter(c net.PacketConn) {
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeEchoReply)
	_ = ipv6.NewPacketConn(c).SetICMPFilter(&f) // best effort: replies are checked anyway
}

func randUint16() uint16 {
	var b [2]byte
	crand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}
