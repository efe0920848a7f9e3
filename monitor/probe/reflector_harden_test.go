package probe

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReflectorForgedDoNotStarveGenuine (issue 13, finding 1): forged
// authenticated-size requests spoofed from the peer's address must not spend
// the peer's reply tokens. Before the fix 20 forged packets emptied the
// bucket (burst 20) and the genuine probe went unanswered.
func TestReflectorForgedDoNotStarveGenuine(t *testing.T) {
	c := newFakeClock()
	r, err := NewReflector(ReflectorOptions{Clock: c, Key: vecKey})
	if err != nil {
		t.Fatal(err)
	}
	peer := rxInfo{src: netip.MustParseAddrPort("192.0.2.1:40000"), dst: netip.MustParseAddr("192.0.2.2")}
	forged := make([]byte, 112)
	for i := range forged {
		forged[i] = byte(i)
	}
	for range 20 {
		if _, ok := r.process(forged, peer, 862); ok {
			t.Fatal("forged request answered")
		}
	}
	good, _ := AppendSender(nil, &SenderPacket{Seq: 1, SSID: 9}, STAMPAuthenticated, vecKey)
	if _, ok := r.process(good, peer, 862); !ok {
		t.Fatalf("genuine probe unanswered after 20 forged ones: %+v", r.Stats())
	}
	// a sustained spoofer at 500/s (10× the reply rate) for 10 s, genuine
	// probes at 5/s in between: every genuine probe is answered.
	answered, sent := 0, 0
	for i := range 5000 {
		r.process(forged, peer, 862)
		if i%100 == 0 {
			sent++
			g, _ := AppendSender(nil, &SenderPacket{Seq: uint32(i)}, STAMPAuthenticated, vecKey)
			if _, ok := r.process(g, peer, 862); ok {
				answered++
			}
		}
		c.Advance(2 * time.Millisecond)
	}
	st := r.Stats()
	if answered != sent || st.DroppedRate != 0 || st.DroppedAuth != 5020 {
		t.Fatalf("%d of %d genuine probes answered under a 500/s spoofer; stats %+v", answered, sent, st)
	}
	t.Logf("genuine %d/%d answered, stats %+v", answered, sent, st)
}

// TestReflectorDropsMulticastAndBroadcast (issue 13, finding 2): requests sent
// to a multicast or broadcast destination get no reply and no further work.
func TestReflectorDropsMulticastAndBroadcast(t *testing.T) {
	r, _ := NewReflector(ReflectorOptions{})
	req, _ := AppendSender(nil, &SenderPacket{Seq: 1}, STAMPUnauthenticated, nil)
	for _, dst := range []string{"224.0.0.1", "239.1.2.3", "255.255.255.255", "ff02::1", "ff05::2"} {
		info := rxInfo{src: netip.MustParseAddrPort("192.0.2.1:40000"), dst: netip.MustParseAddr(dst)}
		if rep, ok := r.process(req, info, 862); ok {
			t.Errorf("request to %s answered with %d octets", dst, len(rep))
		}
	}
	if st := r.Stats(); st.DroppedDest != 5 || st.DroppedRate != 0 {
		t.Fatalf("stats %+v, want 5 dropped for their destination before the rate limiter", st)
	}
}

// TestReflectorLoopbackBroadcast sends a request to the loopback broadcast
// address 127.255.255.255: the reflector must neither answer nor count a
// reply the kernel refused to send.
func TestReflectorLoopbackBroadcast(t *testing.T) {
	r, _ := NewReflector(ReflectorOptions{})
	ln, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.LocalAddr().(*net.UDPAddr).Port
	serveReflector(t, r, ln)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, _ := c.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
	req, _ := AppendSender(nil, &SenderPacket{Seq: 1}, STAMPUnauthenticated, nil)
	if _, err := c.WriteToUDP(req, &net.UDPAddr{IP: net.IPv4(127, 255, 255, 255), Port: port}); err != nil {
		t.Skipf("loopback broadcast not possible here: %v", err)
	}
	// barrier: a unicast request; its reply arrives after the broadcast one's
	c.WriteToUDP(req, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // safety net
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no reply to the unicast request: %v", err)
	}
	if !from.IP.Equal(net.IPv4(127, 0, 0, 1)) || n != len(req) {
		t.Fatalf("reply from %v (%d octets)", from, n)
	}
	// the counter moves just after the kernel took the reply
	st := r.Stats()
	for deadline := time.Now().Add(5 * time.Second); st.Replied+st.SendErrors < 1 && time.Now().Before(deadline); st = r.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st.Received != 2 || st.Replied != 1 || st.SendErrors != 0 || st.DroppedDest != 1 {
		t.Fatalf("stats %+v, want 2 received, 1 replied, 1 dropped for its broadcast destination", st)
	}
}

// serveReflector serves r on conn until the test ends.
func serveReflector(t *testing.T, r *Reflector, conn net.PacketConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Serve(ctx, conn) })
	t.Cleanup(func() { cancel(); wg.Wait(); conn.Close() })
}

// TestReflectorDirectedBroadcast: the host's IPv4 directed broadcasts are
// refused, re-read after bcastRefresh; /31 and /32 have none.
func TestReflectorDirectedBroadcast(t *testing.T) {
	c := newFakeClock()
	r, _ := NewReflector(ReflectorOptions{Clock: c})
	cidrs := []string{"10.1.0.2/24", "192.0.2.1/31", "198.51.100.7/32", "fd00::1/64"}
	reads := 0
	r.ifaceAddrs = func() ([]net.Addr, error) {
		reads++
		var out []net.Addr
		for _, s := range cidrs {
			ip, n, _ := net.ParseCIDR(s)
			n.IP = ip
			out = append(out, n)
		}
		return out, nil
	}
	req, _ := AppendSender(nil, &SenderPacket{Seq: 1}, STAMPUnauthenticated, nil)
	ask := func(dst string) bool {
		_, ok := r.process(req, rxInfo{src: netip.MustParseAddrPort("10.1.0.9:40000"), dst: netip.MustParseAddr(dst)}, 862)
		return ok
	}
	for dst, want := range map[string]bool{"10.1.0.255": false, "10.1.0.2": true, "192.0.2.1": true, "198.51.100.7": true} {
		if got := ask(dst); got != want {
			t.Errorf("request to %s answered %v, want %v", dst, got, want)
		}
	}
	if reads != 1 {
		t.Fatalf("interface addresses read %d times, want once (cached)", reads)
	}
	cidrs = append(cidrs, "10.9.0.1/16")
	c.Advance(bcastRefresh)
	if ask("10.9.255.255") {
		t.Fatal("new interface's broadcast answered after the refresh")
	}
	if reads != 2 {
		t.Fatalf("interface addresses read %d times, want 2", reads)
	}
}
