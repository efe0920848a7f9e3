package probe

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/mobiked/mobiked/mobike"
)

// fakePC is a net.PacketConn: WriteTo records, ReadFrom hands out the queued
// packets and then reports the socket closed.
type fakePC struct {
	mu   sync.Mutex
	sent [][]byte
	rx   []fakeRx
}

type fakeRx struct {
	b    []byte
	from net.Addr
}

func (c *fakePC) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rx) == 0 {
		return 0, nil, net.ErrClosed
	}
	r := c.rx[0]
	c.rx = c.rx[1:]
	return copy(b, r.b), r.from, nil
}

func (c *fakePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, bytes.Clone(b))
	return len(b), nil
}

func (c *fakePC) Close() error                     { return nil }
func (c *fakePC) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *fakePC) SetDeadline(time.Time) error      { return nil }
func (c *fakePC) SetReadDeadline(time.Time) error  { return nil }
func (c *fakePC) SetWriteDeadline(time.Time) error { return nil }

// acceptRig is the reply path of one prober with only the socket faked: a
// Manager, the real socket transport (its reader demultiplexes by source
// address), the real ICMP or STAMP endpoint, one probe in flight.
type acceptRig struct {
	m      *Manager
	tr     *netTransport
	sock   *sharedSock
	pc     *fakePC
	pair   mobike.Pair
	method mobike.ProbeMethod
	key    []byte
	probe  []byte // the probe on the wire
}

const rigICMPID = 0x4d42

func newAcceptRig(t testing.TB, method mobike.ProbeMethod, v6, auth bool) *acceptRig {
	r := &acceptRig{method: method, pc: &fakePC{},
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
	key := sockKey{local: r.pair.Local, dev: "eth0", idx: 2}
	r.sock = &sharedSock{key: key, conn: r.pc, local: netip.AddrPortFrom(r.pair.Local, 40000), icmpID: rigICMPID,
		clock: c, peers: map[netip.Addr]func([]byte){}}
	r.tr.socks[key] = r.sock // Open uses it instead of a real socket
	r.m = NewManager(Options{Clock: c, STAMPKey: r.key, Profiles: Profiles{Jitter: -1},
		Transports: map[mobike.ProbeMethod]Transport{method: r.tr}})
	if err := r.m.Apply(mobike.ActProbeStart{Pair: r.pair, Uplink: "eth0", LinkIdx: 2, Method: method, Profile: mobike.ProfileActive}); err != nil {
		t.Fatal(err)
	}
	c.Advance(0)
	if len(r.pc.sent) != 1 {
		t.Fatalf("%d probes sent, want 1", len(r.pc.sent))
	}
	r.probe = r.pc.sent[0]
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
		Src: r.sock.local, Dst: netip.AddrPortFrom(r.pair.Remote, STAMPPort)})
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

// receive delivers b from src through the transport's reader and reports
// whether the Manager counted the probe answered.
func (r *acceptRig) receive(b []byte, src netip.Addr) bool {
	var from net.Addr = &net.IPAddr{IP: src.AsSlice()}
	if r.method == mobike.ProbeSTAMP {
		from = &net.UDPAddr{IP: src.AsSlice(), Port: STAMPPort}
	}
	r.pc.rx = append(r.pc.rx, fakeRx{b: b, from: from})
	r.tr.readers.Add(1)
	r.tr.read(r.sock) // returns when the fake socket is drained
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
