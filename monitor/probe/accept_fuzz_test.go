package probe

import (
	"bytes"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// fakeIO is a shared socket's system side without a kernel: send records
// the batch, recv hands out the queued packets the way recvmmsg would (the
// source in the sockaddr, the destination in a PKTINFO control message, the
// IPv4 header in front on a raw ICMPv4 socket).
type fakeIO struct {
	mu    sync.Mutex
	sent  [][]byte
	rx    []fakeRx
	v4raw bool
}

type fakeRx struct {
	b        []byte
	src, dst netip.Addr
	port     uint16
}

func (f *fakeIO) send(b *mmsgBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range b.n {
		f.sent = append(f.sent, bytes.Clone(b.bufs[i]))
	}
	b.reset()
	return nil
}

func (f *fakeIO) recv(b *mmsgBatch, _ int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rx) == 0 {
		return 0, unix.EAGAIN
	}
	b.prepareRecv()
	n := 0
	for ; n < len(b.hdrs) && len(f.rx) > 0; n++ {
		r := f.rx[0]
		f.rx = f.rx[1:]
		pkt := r.b
		if f.v4raw {
			h := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0}
			h = append(append(h, r.src.AsSlice()...), r.dst.AsSlice()...)
			pkt = append(h, pkt...)
		}
		b.hdrs[n].Len = uint32(copy(b.bufs[n], pkt))
		putSockaddr(&b.names[n], netip.AddrPortFrom(r.src, r.port))
		var oob []byte
		if r.dst.Is4() {
			info := make([]byte, 12) // in_pktinfo: ifindex, spec_dst, addr
			copy(info[8:], r.dst.AsSlice())
			oob = cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, info)
		} else {
			info := make([]byte, 20) // in6_pktinfo: addr, ifindex
			copy(info, r.dst.AsSlice())
			oob = cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, info)
		}
		b.hdrs[n].Hdr.SetControllen(copy(b.oobs[n], oob))
	}
	return n, nil
}

func (f *fakeIO) close() error { return nil }

// cmsg builds one control message.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// acceptRig is the reply path of one prober with only the socket's system
// calls faked: a Manager, the real socket transport (its reads demultiplex
// by destination and source address), the real ICMP or STAMP endpoint, one
// probe in flight.
type acceptRig struct {
	m      *Manager
	tr     *netTransport
	sock   *sharedSock
	io     *fakeIO
	pair   mobike.Pair
	method mobike.ProbeMethod
	key    []byte
	probe  []byte // the probe on the wire
}

const rigICMPID = 0x4d42

func newAcceptRig(t testing.TB, method mobike.ProbeMethod, v6, auth bool) *acceptRig {
	r := &acceptRig{method: method,
		pair: mobike.Pair{Local: netip.MustParseAddr("10.1.0.2"), Remote: netip.MustParseAddr("10.3.0.2")}}
	if v6 {
		r.pair = mobike.Pair{Local: netip.MustParseAddr("fd00:1::2"), Remote: netip.MustParseAddr("fd00:3::2")}
	}
	if auth && method == mobike.ProbeSTAMP {
		r.key = vecKey
	}
	c := newFakeClock()
	r.tr = newNetTransport(method, c, slog.New(slog.DiscardHandler), nil)
	r.tr.stampKey, r.tr.stampPort, r.tr.locEvery = r.key, STAMPPort, 10
	key := sockKey{dev: "eth0", v6: v6}
	r.io = &fakeIO{v4raw: method == mobike.ProbeICMP && !v6}
	r.sock = newSharedSock(r.tr, key, r.io)
	r.sock.icmpID, r.sock.ipHdr = rigICMPID, r.io.v4raw
	r.sock.local = netip.AddrPortFrom(netip.IPv4Unspecified(), 40000)
	if v6 {
		r.sock.local = netip.AddrPortFrom(netip.IPv6Unspecified(), 40000)
	}
	r.tr.socks[key] = r.sock // Open uses it instead of a real socket
	r.m = NewManager(Options{Clock: c, STAMPKey: r.key, Profiles: Profiles{Jitter: -1},
		Transports: map[mobike.ProbeMethod]Transport{method: r.tr}})
	if err := r.m.Apply(mobike.ActProbeStart{Pair: r.pair, Uplink: "eth0", LinkIdx: 2, Method: method, Profile: mobike.ProfileActive}); err != nil {
		t.Fatal(err)
	}
	c.Advance(0)
	if len(r.io.sent) != 1 {
		t.Fatalf("%d probes sent, want 1", len(r.io.sent))
	}
	r.probe = r.io.sent[0]
	return r
}

// genuine is the reply the probed peer would send.
func (r *acceptRig) genuine(t testing.TB) []byte {
	if r.method == mobike.ProbeICMP {
		m, err := icmp.ParseMessage(r.proto(), r.probe)
		if err != nil {
			t.Fatal(err)
		}
		m.Type = ipv4.ICMPTypeEchoReply
		if r.pair.Remote.Is6() {
			m.Type = ipv6.ICMPTypeEchoReply
		}
		b, err := m.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := Reflect(r.probe, ReflectParams{Mode: r.mode(), Key: r.key, TTL: 64,
		Src: netip.AddrPortFrom(r.pair.Local, r.sock.local.Port()), Dst: netip.AddrPortFrom(r.pair.Remote, STAMPPort)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *acceptRig) proto() int {
	if r.pair.Remote.Is6() {
		return 58
	}
	return 1
}

func (r *acceptRig) mode() STAMPMode {
	if len(r.key) > 0 {
		return STAMPAuthenticated
	}
	return STAMPUnauthenticated
}

// receive delivers b from src to the pair's address through the
// transport's read and reports whether the Manager counted the probe
// answered.
func (r *acceptRig) receive(b []byte, src netip.Addr) bool {
	rx := fakeRx{b: b, src: src, dst: r.pair.Local}
	if r.method == mobike.ProbeSTAMP {
		rx.port = STAMPPort
	}
	r.io.mu.Lock()
	r.io.rx = append(r.io.rx, rx)
	r.io.mu.Unlock()
	r.tr.Poll() // returns when the fake socket is drained
	for {
		select {
		case ev := <-r.m.Events():
			if res, ok := ev.(mobike.EvProbeResult); ok && res.OK {
				return true
			}
		default:
			return false
		}
	}
}

// identifies reports, from the packets alone, whether reply carries the
// identifiers of the probe: ICMP echo reply with the socket's ID, the probe's
// sequence and payload; STAMP reflector packet (HMAC-valid in authenticated
// mode) with the probe's sequence, session and nonce.
func (r *acceptRig) identifies(reply []byte) bool {
	if r.method == mobike.ProbeICMP {
		req, _ := icmp.ParseMessage(r.proto(), r.probe)
		rep, err := icmp.ParseMessage(r.proto(), reply)
		if err != nil || (rep.Type != ipv4.ICMPTypeEchoReply && rep.Type != ipv6.ICMPTypeEchoReply) {
			return false
		}
		q, a := req.Body.(*icmp.Echo), rep.Body.(*icmp.Echo)
		return a.ID == rigICMPID && uint16(a.Seq) == uint16(q.Seq) && bytes.Equal(a.Data, q.Data)
	}
	sp, _ := DecodeSender(r.probe, r.mode(), r.key)
	rp, err := DecodeReflector(reply, r.mode(), r.key)
	if err != nil || uint16(rp.SenderSeq) != uint16(sp.Seq) || (rp.SSID != 0 && rp.SSID != sp.SSID) {
		return false
	}
	if r.mode() == STAMPAuthenticated {
		return uint16(rp.SenderTimestamp) == uint16(sp.Timestamp)
	}
	req, _ := DecodeTLVs(sp.TLVs)
	rep, _ := DecodeTLVs(rp.TLVs)
	var want []byte
	for _, t := range req {
		if t.Type == TLVExtraPadding {
			want = t.Value
		}
	}
	for _, t := range rep {
		if t.Type == TLVExtraPadding && len(t.Value) == len(want) {
			return bytes.Equal(t.Value, want)
		}
	}
	return false
}

// FuzzReplyAcceptance: whatever arrives on a probe socket, a probe counts
// as answered only when the packet came from the probed address and carries
// the probe's identifiers; and the genuine reply from the probed address is
// always accepted. The fuzzer mutates the genuine reply (XOR mask, cut) or
// replaces it, and picks the source.
func FuzzReplyAcceptance(f *testing.F) {
	f.Add(uint8(0), []byte{}, uint16(0), []byte{}, false)
	f.Add(uint8(1), []byte{}, uint16(0), []byte{}, false)
	f.Add(uint8(2), []byte{}, uint16(0), []byte{}, false)
	f.Add(uint8(3), []byte{0, 0, 0, 0, 0, 0, 0, 1}, uint16(0), []byte{}, false)
	f.Add(uint8(4), []byte{0, 0, 0, 0, 0, 1}, uint16(0), []byte{}, false)
	f.Add(uint8(5), []byte{}, uint16(20), []byte{}, false)
	f.Add(uint8(8), []byte{}, uint16(0), []byte{}, false) // from another address
	f.Add(uint8(0), []byte{}, uint16(0), []byte{8, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, sel uint8, mask []byte, cut uint16, raw []byte, replace bool) {
		method, v6, auth := mobike.ProbeICMP, sel&1 != 0, false
		if sel&2 != 0 {
			method, auth = mobike.ProbeSTAMP, sel&4 != 0
		}
		r := newAcceptRig(t, method, v6, auth)
		defer r.m.Close()
		src := r.pair.Remote
		switch sel >> 3 & 3 {
		case 1:
			src = r.pair.Local // our own address
		case 2:
			src = r.pair.Remote.Next() // a neighbour of the peer
		}
		pkt := r.genuine(t)
		untouched := !replace && cut == 0
		if replace {
			pkt = raw
		}
		for i, m := range mask {
			if i < len(pkt) {
				pkt[i] ^= m
				untouched = untouched && m == 0
			}
		}
		if cut > 0 && int(cut) < len(pkt) {
			pkt = pkt[:cut]
		}
		want := src == r.pair.Remote && r.identifies(pkt)
		if got := r.receive(pkt, src); got && !want {
			t.Fatalf("%s (v6 %v auth %v) accepted %x from %s: not from the probed address or wrong identifiers", method, v6, auth, pkt, src)
		} else if untouched && src == r.pair.Remote && !got {
			t.Fatalf("%s (v6 %v auth %v): the genuine reply %x was not accepted", method, v6, auth, pkt)
		}
	})
}
