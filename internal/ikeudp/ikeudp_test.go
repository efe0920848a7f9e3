package ikeudp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// A peer on a NAT-T port (anything but 500) gets the non-ESP marker, its
// answers lose it, keepalives and ESP are dropped, and the datagram's
// destination comes from IP_PKTINFO.
func TestMarkerAndClassification(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tr, err := Listen(Config{Locals: []netip.Addr{lo}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	me, ok := tr.Local(lo)
	if !ok || me.Port() == 0 || tr.Device(lo) != "lo" {
		t.Fatalf("local %v %v device %q", me, ok, tr.Device(lo))
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	msg := []byte("an IKE message")
	if err := tr.Send(me, peerAP, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := peer.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], wire.AddNonESPMarker(msg)) {
		t.Errorf("peer got %x", buf[:n])
	}
	to := net.UDPAddrFromAddrPort(me)
	for _, b := range [][]byte{{0xff}, {1, 2, 3, 4, 5, 6, 7, 8}, wire.AddNonESPMarker([]byte("answer"))} {
		if _, err := peer.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case d := <-tr.Recv():
		if string(d.Data) != "answer" || d.Src != peerAP || d.Dst != me {
			t.Errorf("got %q from %s to %s", d.Data, d.Src, d.Dst)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
	}
	if err := tr.Send(netip.AddrPortFrom(lo, me.Port()+1), peerAP, msg); err == nil {
		t.Error("send from an unbound port accepted")
	}
	tr.Close()
	if _, ok := <-tr.Recv(); ok {
		t.Error("Recv open after Close")
	}
}

func TestListenErrors(t *testing.T) {
	if _, err := Listen(Config{}); err == nil {
		t.Error("no locals accepted")
	}
	if _, err := Listen(Config{Locals: []netip.Addr{netip.MustParseAddr("192.0.2.99")}}); err == nil {
		t.Error("address held by no interface accepted")
	}
}
