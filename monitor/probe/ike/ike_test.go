package ike

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/wire"
)

var (
	local  = netip.MustParseAddrPort("10.1.0.2:40000")
	remote = netip.MustParseAddrPort("10.3.0.2:500")
	spiR   = wire.SPI{0xaa, 1, 2, 3, 4, 5, 6, 7}
)

// responder is a scripted IKE responder: for each request it returns the
// datagrams to deliver.
type responder func(req *wire.Message) [][]byte

// fakeConn is an in-memory connected socket: Write hands the request to the
// responder, Read delivers queued datagrams, then reports a deadline (the
// probe's timeout) or err.
type fakeConn struct {
	t       *testing.T
	respond responder
	queue   [][]byte
	reqs    []*wire.Message
	readErr error
}

func (c *fakeConn) Write(b []byte) (int, error) {
	m, err := wire.Parse(b)
	if err != nil {
		c.t.Fatalf("probe sent unparsable request: %v", err)
	}
	c.reqs = append(c.reqs, m)
	c.queue = append(c.queue, c.respond(m)...)
	return len(b), nil
}

func (c *fakeConn) Read(b []byte) (int, error) {
	if len(c.queue) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(b, c.queue[0])
	c.queue = c.queue[1:]
	return n, nil
}

func marshal(t testing.TB, m *wire.Message) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// accept answers like charon: SA, KE, Nonce and NAT-D hashes computed over
// the address the request was seen from and the responder's own address.
func accept(t testing.TB, seenFrom, self netip.AddrPort) responder {
	return func(req *wire.Message) [][]byte {
		m := &wire.Message{
			Header: wire.Header{SPIi: req.SPIi, SPIr: spiR, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse},
			Payloads: []wire.Payload{
				&wire.SA{Proposals: []wire.Proposal{wire.DefaultIKEProposal()}},
				&wire.KE{Group: wire.DHCurve25519, Data: make([]byte, 32)},
				&wire.Nonce{Data: make([]byte, 32)},
				wire.NATDetectionSource(req.SPIi, spiR, self),
				wire.NATDetectionDestination(req.SPIi, spiR, seenFrom),
				wire.NotifyStatus(wire.NotifyIKEv2FragmentationSupported),
			},
		}
		return [][]byte{marshal(t, m)}
	}
}

func notifyResponse(t testing.TB, req *wire.Message, n *wire.Notify) []byte {
	return marshal(t, &wire.Message{
		Header:   wire.Header{SPIi: req.SPIi, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse},
		Payloads: []wire.Payload{n},
	})
}

func TestExchange(t *testing.T) {
	natted := netip.MustParseAddrPort("10.3.0.1:40000")
	tests := []struct {
		name      string
		respond   func(t *testing.T) responder
		readErr   error
		reachable bool
		nat       mobike.NATVerdict
		peerNAT   bool
		refused   bool
		errNotify wire.NotifyType
		cookies   int
		group     wire.DHGroup // of the last request; 31 when zero
		requests  int          // sent; 1 + cookies when zero
	}{
		{name: "no nat", respond: func(t *testing.T) responder { return accept(t, local, remote) },
			reachable: true, nat: mobike.NATNone},
		{name: "nat on our side", respond: func(t *testing.T) responder { return accept(t, natted, remote) },
			reachable: true, nat: mobike.NATPresent},
		{name: "peer fakes its source hash", respond: func(t *testing.T) responder {
			return accept(t, local, netip.MustParseAddrPort("192.0.2.9:500"))
		}, reachable: true, nat: mobike.NATNone, peerNAT: true},
		{name: "silent peer", respond: func(t *testing.T) responder { return func(*wire.Message) [][]byte { return nil } }},
		{name: "port unreachable", respond: func(t *testing.T) responder { return func(*wire.Message) [][]byte { return nil } },
			readErr: syscall.ECONNREFUSED, refused: true},
		{name: "invalid ke for unsupported group", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyInvalidKEPayload, Data: []byte{0, 14}})}
			}
		}, reachable: true, nat: mobike.NATUnknown, errNotify: wire.NotifyInvalidKEPayload, group: wire.DHCurve25519},
		{name: "invalid ke then accept", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				if ke := req.Find(wire.PayloadKE).(*wire.KE); ke.Group != wire.DHECP256 || len(ke.Data) != 64 {
					return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyInvalidKEPayload, Data: []byte{0, 19}})}
				}
				return accept(t, local, remote)(req)
			}
		}, reachable: true, nat: mobike.NATNone, group: wire.DHECP256, requests: 2},
		{name: "invalid ke twice", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				g := byte(19)
				if req.Find(wire.PayloadKE).(*wire.KE).Group == wire.DHECP256 {
					g = 20
				}
				return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyInvalidKEPayload, Data: []byte{0, g}})}
			}
		}, reachable: true, nat: mobike.NATUnknown, errNotify: wire.NotifyInvalidKEPayload, group: wire.DHECP256, requests: 2},
		{name: "no proposal chosen", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				return [][]byte{notifyResponse(t, req, wire.NotifyStatus(wire.NotifyNoProposalChosen))}
			}
		}, reachable: true, nat: mobike.NATUnknown, errNotify: wire.NotifyNoProposalChosen},
		{name: "foreign datagrams skipped", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				other := *req
				other.SPIi = wire.SPI{9, 9, 9, 9, 9, 9, 9, 9}
				return [][]byte{
					[]byte("garbage"),
					accept(t, natted, remote)(&other)[0], // someone else's response
					marshal(t, req),                      // a request, not a response
					accept(t, local, remote)(req)[0],
				}
			}
		}, reachable: true, nat: mobike.NATNone},
		{name: "cookie", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				if c := req.Notify(wire.NotifyCookie); c == nil || !bytes.Equal(c.Data, []byte("cookie-1")) {
					return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyCookie, Data: []byte("cookie-1")})}
				}
				if _, first := req.Payloads[0].(*wire.Notify); !first {
					t.Error("COOKIE is not the first payload of the retry")
				}
				return accept(t, local, remote)(req)
			}
		}, reachable: true, nat: mobike.NATNone, cookies: 1},
		{name: "cookie then silence", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				if req.Notify(wire.NotifyCookie) != nil {
					return nil
				}
				return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyCookie, Data: []byte("c")})}
			}
		}, reachable: true, nat: mobike.NATUnknown, cookies: 1},
		{name: "endless cookies", respond: func(t *testing.T) responder {
			return func(req *wire.Message) [][]byte {
				return [][]byte{notifyResponse(t, req, &wire.Notify{Type: wire.NotifyCookie, Data: []byte("again")})}
			}
		}, reachable: true, nat: mobike.NATUnknown, cookies: maxCookieRounds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConn{t: t, respond: tc.respond(t), readErr: tc.readErr}
			res, err := exchange(context.Background(), c, wire.InitRequest{Local: local, Remote: remote})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reachable != tc.reachable || res.NAT != tc.nat || res.PeerNAT != tc.peerNAT ||
				res.Refused != tc.refused || res.Cookies != tc.cookies || res.Local != local {
				t.Errorf("got %+v", res)
			}
			if tc.reachable && (res.Response == nil || res.Response.Error != tc.errNotify || res.RTT <= 0) {
				t.Errorf("response %+v rtt %v", res.Response, res.RTT)
			}
			checkRequest(t, c.reqs[0])
			wantGroup, wantReqs := tc.group, tc.requests
			if wantGroup == 0 {
				wantGroup = wire.DHCurve25519
			}
			if wantReqs == 0 {
				wantReqs = 1 + tc.cookies
			}
			if res.Group != wantGroup || len(c.reqs) != wantReqs {
				t.Errorf("group %v after %d requests, want %v after %d", res.Group, len(c.reqs), wantGroup, wantReqs)
			}
			for _, r := range c.reqs[1:] {
				if r.SPIi != c.reqs[0].SPIi {
					t.Error("retry changed SPIi")
				}
			}
		})
	}
}

// checkRequest asserts the probe's request is a proper IKE_SA_INIT that
// charon's aes128gcm16-prfsha256-x25519 proposal accepts.
func checkRequest(t *testing.T, m *wire.Message) {
	t.Helper()
	if m.Exchange != wire.ExchangeIKESAInit || m.Flags != wire.FlagInitiator || m.SPIi.IsZero() || !m.SPIr.IsZero() {
		t.Errorf("request header %+v", m.Header)
	}
	sa, _ := m.Find(wire.PayloadSA).(*wire.SA)
	if sa == nil || sa.Proposals[0].String() != wire.DefaultIKEProposal().String() {
		t.Errorf("request SA %v", sa)
	}
	ke, _ := m.Find(wire.PayloadKE).(*wire.KE)
	if ke == nil || ke.Group != wire.DHCurve25519 || len(ke.Data) != 32 {
		t.Errorf("request KE %v", ke)
	}
	src := m.Notify(wire.NotifyNATDetectionSourceIP)
	if h, err := src.NATHash(); err != nil || h != wire.NATDetectionHash(m.SPIi, wire.SPI{}, local) {
		t.Errorf("request NAT-D source %v %v", src, err)
	}
}

func TestExchangeFreshSPI(t *testing.T) {
	c := &fakeConn{t: t, respond: func(*wire.Message) [][]byte { return nil }}
	for range 2 {
		if _, err := exchange(context.Background(), c, wire.InitRequest{Local: local, Remote: remote}); err != nil {
			t.Fatal(err)
		}
	}
	if c.reqs[0].SPIi == c.reqs[1].SPIi {
		t.Error("two probes used the same SPI")
	}
}

func TestExchangeReadError(t *testing.T) {
	c := &fakeConn{t: t, respond: func(*wire.Message) [][]byte { return nil }, readErr: errors.New("boom")}
	if _, err := exchange(context.Background(), c, wire.InitRequest{Local: local, Remote: remote}); err == nil {
		t.Error("read error not reported")
	}
}

// serveIKE runs a one-socket responder on loopback that accepts every
// request, hashing the source it observes.
func serveIKE(t *testing.T) netip.AddrPort {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	self := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req, err := wire.Parse(buf[:n])
			if err != nil {
				continue
			}
			for _, out := range accept(t, from, self)(req) {
				pc.WriteToUDPAddrPort(out, from)
			}
		}
	}()
	return self
}

func TestProbeLoopback(t *testing.T) {
	peer := serveIKE(t)
	res, err := Probe(context.Background(), Config{
		Local: netip.MustParseAddrPort("127.0.0.1:0"), Device: "lo", Remote: peer, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reachable || res.NAT != mobike.NATNone || res.PeerNAT || res.Local.Port() == 0 ||
		res.Local.Addr() != netip.MustParseAddr("127.0.0.1") || !res.Response.Accepted() {
		t.Errorf("got %+v", res)
	}
}

func TestProbeRefused(t *testing.T) {
	// A port nobody listens on: loopback answers ICMP port unreachable.
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	res, err := Probe(context.Background(), Config{Remote: dead, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reachable || !res.Refused {
		t.Errorf("got %+v", res)
	}
}

func TestProbeErrors(t *testing.T) {
	if _, err := Probe(context.Background(), Config{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("empty config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Probe(ctx, Config{Remote: netip.MustParseAddrPort("127.0.0.1:500")}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	_, err := Probe(context.Background(), Config{Remote: netip.MustParseAddrPort("127.0.0.1:500"), Device: "no-such-dev0"})
	if err == nil {
		t.Error("bad device accepted")
	}
}
