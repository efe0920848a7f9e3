package probe

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// startReflector serves r on a loopback UDP socket and returns its address.
func startReflector(t *testing.T, r *Reflector) *net.UDPAddr {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Serve(ctx, c) })
	t.Cleanup(func() { cancel(); wg.Wait(); c.Close() })
	return c.LocalAddr().(*net.UDPAddr)
}

func dialReflector(t *testing.T, to *net.UDPAddr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readReply(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // safety net, not a protocol timer
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return buf[:n]
}

func TestReflectorAuthenticatedDropsUnauthenticated(t *testing.T) {
	r, err := NewReflector(ReflectorOptions{Key: vecKey})
	if err != nil {
		t.Fatal(err)
	}
	c := dialReflector(t, startReflector(t, r))
	unauth, _ := AppendSender(nil, &SenderPacket{Seq: 1, SSID: 9}, STAMPUnauthenticated, nil)
	unauth112 := make([]byte, 112) // right size, no valid HMAC
	binary.BigEndian.PutUint32(unauth112, 2)
	wrongKey := append([]byte{0xff}, vecKey[1:]...)
	badKey, _ := AppendSender(nil, &SenderPacket{Seq: 3}, STAMPAuthenticated, wrongKey)
	good, _ := AppendSender(nil, &SenderPacket{Seq: 4, SSID: 9}, STAMPAuthenticated, vecKey)
	for _, p := range [][]byte{unauth, unauth112, badKey, good} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// the valid probe was sent last: the first reply must be its own
	rep := readReply(t, c)
	rp, err := DecodeReflector(rep, STAMPAuthenticated, vecKey)
	if err != nil || rp.SenderSeq != 4 || len(rep) != 112 {
		t.Fatalf("first reply seq %d (%d octets, %v), want the authenticated probe 4", rp.SenderSeq, len(rep), err)
	}
	if rp.SenderTTL != 64 {
		t.Fatalf("ses-sender TTL %d, want loopback's 64", rp.SenderTTL)
	}
	// The reflector counts a reply after the kernel took it: the client may
	// read it first.
	st := r.Stats()
	for deadline := time.Now().Add(5 * time.Second); st.Replied+st.SendErrors < 1 && time.Now().Before(deadline); st = r.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st.DroppedShort != 1 || st.DroppedAuth != 2 || st.Replied != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReflectorNeverLarger(t *testing.T) {
	r, _ := NewReflector(ReflectorOptions{Rate: 1000, Burst: 1000})
	c := dialReflector(t, startReflector(t, r))
	loc := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	sizes := []int{14, 43, 44, 45, 100, 1400}
	for i, n := range sizes {
		req := make([]byte, n)
		if n >= 44 {
			p, _ := AppendSender(nil, &SenderPacket{Seq: uint32(i)}, STAMPUnauthenticated, nil)
			copy(req, p)
		}
		if n >= 44+len(loc) {
			copy(req[44:], loc)
		}
		c.Write(req)
	}
	// barrier: a final probe; every earlier reply arrives before its reply
	final, _ := AppendSender(nil, &SenderPacket{Seq: 99}, STAMPUnauthenticated, nil)
	c.Write(final)
	got := map[uint32]int{}
	for {
		rep := readReply(t, c)
		rp, err := DecodeReflector(rep, STAMPUnauthenticated, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[rp.SenderSeq] = len(rep)
		if rp.SenderSeq == 99 {
			break
		}
	}
	for i, n := range sizes {
		l, ok := got[uint32(i)]
		switch {
		case n < 44 && ok:
			t.Fatalf("reply to a %d-octet request", n)
		case n >= 44 && l != n:
			t.Fatalf("%d-octet request got a %d-octet reply", n, l)
		}
	}
	if r.Stats().DroppedShort != 2 {
		t.Fatalf("stats %+v", r.Stats())
	}
}

// TestReflectorFloodRateLimited floods one source at 10 000 probes/s for 1 s
// on loopback; replies must stay within rate × elapsed + burst.
func TestReflectorFloodRateLimited(t *testing.T) {
	const rate, burst = 100, 10
	r, _ := NewReflector(ReflectorOptions{Rate: rate, Burst: burst})
	c := dialReflector(t, startReflector(t, r))
	c.SetReadBuffer(1 << 20)
	var replies int
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		buf := make([]byte, 256)
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(buf); err != nil {
				select {
				case <-done:
					return
				default:
					continue
				}
			}
			replies++
		}
	})
	req, _ := AppendSender(nil, &SenderPacket{}, STAMPUnauthenticated, nil)
	begin := time.Now()
	tick := time.NewTicker(10 * time.Millisecond) // paces the flood: 100 probes per 10 ms
	for range 100 {
		for range 100 {
			c.Write(req)
		}
		<-tick.C
	}
	tick.Stop()
	// wait until the reflector has drained its socket, then take the time
	for last := uint64(0); ; {
		time.Sleep(50 * time.Millisecond)
		n := r.Stats().Received
		if n == last {
			break
		}
		last = n
	}
	elapsed := time.Since(begin)
	close(done)
	wg.Wait()
	st := r.Stats()
	max := int(rate*elapsed.Seconds()) + burst + 1
	if replies > max || int(st.Replied) > max {
		t.Fatalf("%d replies (%d counted) in %v, limit %d", replies, st.Replied, elapsed, max)
	}
	if replies < rate/2 {
		t.Fatalf("only %d replies: limiter too strict", replies)
	}
	if st.Received < 1000 || st.DroppedRate != st.Received-st.Replied {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("flood: %d requests received, %d replies in %v (rate %d/s, burst %d)", st.Received, replies, elapsed, rate, burst)
}

// TestReflectorRateVirtualClock is the deterministic version: 10 000
// requests over one virtual second.
func TestReflectorRateVirtualClock(t *testing.T) {
	c := newFakeClock()
	r, _ := NewReflector(ReflectorOptions{Clock: c, Rate: 100, Burst: 10})
	req, _ := AppendSender(nil, &SenderPacket{}, STAMPUnauthenticated, nil)
	info := rxInfo{src: netip.MustParseAddrPort("192.0.2.1:40000"), dst: netip.MustParseAddr("192.0.2.2")}
	n := 0
	for range 10000 {
		if _, ok := r.process(req, info, 862); ok {
			n++
		}
		c.Advance(100 * time.Microsecond)
	}
	if n < 100 || n > 110 {
		t.Fatalf("%d replies in one second, want 100 + burst 10", n)
	}
	// loop protection: a request from port 862 is never answered
	if _, ok := r.process(req, rxInfo{src: netip.MustParseAddrPort("192.0.2.9:862")}, 862); ok {
		t.Fatal("request from the reflector port answered")
	}
}

// TestReflectorDualStackLocation: a reflector on a dual-stack socket answers
// an IPv4 request from the address it was sent to and fills the Location TLV
// with the addresses and ports it saw.
func TestReflectorDualStackLocation(t *testing.T) {
	r, _ := NewReflector(ReflectorOptions{})
	ln, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skipf("no dual-stack socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Serve(ctx, ln) })
	t.Cleanup(func() { cancel(); wg.Wait(); ln.Close() })
	port := ln.LocalAddr().(*net.UDPAddr).Port
	for _, dst := range []string{"127.0.0.1", "::1"} {
		t.Run(dst, func(t *testing.T) {
			c := dialReflector6or4(t, netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(port)))
			loc := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
			req, _ := AppendSender(nil, &SenderPacket{Seq: 5, SSID: 77, TLVs: loc}, STAMPUnauthenticated, nil)
			c.Write(req)
			rep := readReply(t, c)
			rp, err := DecodeReflector(rep, STAMPUnauthenticated, nil)
			if err != nil || rp.SenderSeq != 5 || rp.SSID != 77 {
				t.Fatalf("reply %+v %v", rp, err)
			}
			tlvs, _ := DecodeTLVs(rp.TLVs)
			got, err := DecodeLocation(tlvs[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			me := c.LocalAddr().(*net.UDPAddr).AddrPort()
			want := Location{Src: me.Addr().Unmap(), SrcPort: me.Port(), Dst: netip.MustParseAddr(dst), DstPort: uint16(port)}
			if got != want {
				t.Fatalf("location %+v, want %+v", got, want)
			}
		})
	}
}

func dialReflector6or4(t *testing.T, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Skipf("dial %s: %v", to, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
