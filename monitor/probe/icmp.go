package probe

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// icmpEndpoint sends ICMP echo requests carrying the probe nonce as payload;
// a reply counts only when it echoes the same ID, sequence and payload.
type icmpEndpoint struct {
	sock    *sharedSock
	local   netip.Addr
	remote  netip.Addr
	to      netip.AddrPort
	oob     []byte // PKTINFO: source address and device
	deliver func(Reply)
	close   func() error
}

// icmpNonceLen is the echo payload: 16 random octets per probe.
const icmpNonceLen = 16

// ICMP echo types (RFC 792, RFC 4443).
const (
	icmpEchoReply     = 0
	icmpEchoRequest   = 8
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	icmpEchoHeaderLen = 8
)

func newICMPEndpoint(s *sharedSock, local, remote netip.Addr) *icmpEndpoint {
	return &icmpEndpoint{sock: s, local: local, remote: remote, to: netip.AddrPortFrom(remote, 0), oob: pktinfo(local, s.ifindex)}
}

func (e *icmpEndpoint) NonceLen() int            { return icmpNonceLen }
func (e *icmpEndpoint) setDeliver(f func(Reply)) { e.deliver = f }
func (e *icmpEndpoint) setClose(f func() error)  { e.close = f }
func (e *icmpEndpoint) Close() error             { return e.close() }

// Send queues the echo request; the transport's Flush sends it.
func (e *icmpEndpoint) Send(seq uint32, nonce []byte) (int, error) {
	n, err := e.sock.enqueue(e.to, e.oob, func(b []byte) ([]byte, error) {
		return appendEcho(b, e.remote.Is6(), uint16(e.sock.icmpID), uint16(seq), nonce), nil
	})
	if err != nil {
		return 0, fmt.Errorf("probe: icmp send to %s: %w", e.remote, err)
	}
	return ipHeaderLen(e.remote) + n, nil
}

// appendEcho appends an echo request. The kernel fills the ICMPv6 checksum
// (it covers the IPv6 pseudo-header); the ICMPv4 one is computed here.
func appendEcho(b []byte, v6 bool, id, seq uint16, data []byte) []byte {
	typ := byte(icmpEchoRequest)
	if v6 {
		typ = icmp6EchoRequest
	}
	start := len(b)
	b = append(b, typ, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, data...)
	if !v6 {
		binary.BigEndian.PutUint16(b[start+2:], inetChecksum(b[start:]))
	}
	return b
}

// inetChecksum is the Internet checksum (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// parseEchoReply decodes an echo reply of the family; data aliases b.
func parseEchoReply(b []byte, v6 bool) (id, seq uint16, data []byte, ok bool) {
	want := byte(icmpEchoReply)
	if v6 {
		want = icmp6EchoReply
	}
	if len(b) < icmpEchoHeaderLen || b[0] != want || b[1] != 0 {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), b[icmpEchoHeaderLen:], true
}

func (e *icmpEndpoint) handle(b []byte, at time.Time) {
	id, seq, data, ok := parseEchoReply(b, e.remote.Is6())
	if !ok || int(id) != e.sock.icmpID {
		return
	}
	e.deliver(Reply{Seq: uint32(seq), Nonce: data, At: at})
}

// attachEchoFilter installs a socket filter on a raw ICMP socket that passes
// only echo replies carrying id, so that the pings of other programs (and
// other ICMP) arriving on the uplink never wake the reader. An IPv4 raw
// socket's filter sees the IP header first; an IPv6 one starts at ICMPv6.
func attachEchoFilter(fd int, v6 bool, id uint16) error {
	var prog []bpf.Instruction
	if v6 {
		prog = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmp6EchoReply, SkipFalse: 3},
			bpf.LoadAbsolute{Off: 4, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipFalse: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	} else {
		prog = []bpf.Instruction{
			bpf.LoadMemShift{Off: 0}, // X = IP header length
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpEchoReply, SkipFalse: 3},
			bpf.LoadIndirect{Off: 4, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipFalse: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return err
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]})
}

func randUint16() uint16 {
	var b [2]byte
	crand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}
