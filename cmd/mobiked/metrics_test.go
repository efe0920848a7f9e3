package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/monitor/metrics"
	"github.com/mobiked/mobiked/monitor/probe"
	"github.com/mobiked/mobiked/policy"
)

type probeCount struct{ sent, lost, bytes int }

// recorder collects what probeAccount.flush reports, per uplink.
type recorder map[string]*probeCount

func (r recorder) observe(uplink string, bytes int, lost bool) {
	c := r[uplink]
	if c == nil {
		c = &probeCount{}
		r[uplink] = c
	}
	c.sent++
	c.bytes += bytes
	if lost {
		c.lost++
	}
}

func pair(local, remote string) mobike.Pair {
	return mobike.Pair{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote)}
}

func snap(bytes map[string]uint64, ps ...probe.PairStats) probe.Snapshot {
	return probe.Snapshot{Pairs: ps, UplinkBytes: bytes}
}

func ps(p mobike.Pair, uplink string, sent uint64) probe.PairStats {
	return probe.PairStats{Pair: p, Uplink: uplink, Stats: mobike.PathStats{Sent: sent}}
}

// TestProbeAccount: the probe counters equal the prober's totals, through
// prober restarts and stops, and lost never runs ahead of sent.
func TestProbeAccount(t *testing.T) {
	a0 := pair("10.1.0.2", "10.3.0.2")
	a1 := pair("10.1.0.2", "10.4.0.2")
	b0 := pair("10.2.0.2", "10.3.0.2")
	acc := newProbeAccount()
	rec := recorder{}
	check := func(step, uplink string, want probeCount) {
		t.Helper()
		got := probeCount{}
		if c := rec[uplink]; c != nil {
			got = *c
		}
		if got != want {
			t.Fatalf("%s: %s counters %+v, want %+v", step, uplink, got, want)
		}
	}

	// Two pairs on eth0, one on eth1.
	acc.absorb(snap(map[string]uint64{"eth0": 700, "eth1": 300}, ps(a0, "eth0", 5), ps(a1, "eth0", 2), ps(b0, "eth1", 3)))
	acc.lost(b0)
	acc.absorb(snap(map[string]uint64{"eth0": 700, "eth1": 300}, ps(a0, "eth0", 5), ps(a1, "eth0", 2), ps(b0, "eth1", 3)))
	acc.flush(rec.observe)
	check("first", "eth0", probeCount{7, 0, 700})
	check("first", "eth1", probeCount{3, 1, 300})

	// Nothing new: nothing counted.
	acc.absorb(snap(map[string]uint64{"eth0": 700, "eth1": 300}, ps(a0, "eth0", 5), ps(a1, "eth0", 2), ps(b0, "eth1", 3)))
	acc.flush(rec.observe)
	check("idle", "eth0", probeCount{7, 0, 700})

	// a1 is stopped after two more probes (absorbed before the stop), then
	// started again from 0 and sends one.
	acc.absorb(snap(map[string]uint64{"eth0": 900, "eth1": 300}, ps(a0, "eth0", 5), ps(a1, "eth0", 4), ps(b0, "eth1", 3)))
	acc.absorb(snap(map[string]uint64{"eth0": 900, "eth1": 300}, ps(a0, "eth0", 5), ps(b0, "eth1", 3)))
	acc.absorb(snap(map[string]uint64{"eth0": 1000, "eth1": 300}, ps(a0, "eth0", 5), ps(a1, "eth0", 1), ps(b0, "eth1", 3)))
	acc.flush(rec.observe)
	check("restart", "eth0", probeCount{10, 0, 1000})

	// a0 is replaced by a prober whose Sent (2) is below the old one (5).
	acc.absorb(snap(map[string]uint64{"eth0": 1200, "eth1": 300}, ps(a0, "eth0", 2), ps(a1, "eth0", 1), ps(b0, "eth1", 3)))
	acc.flush(rec.observe)
	check("replaced", "eth0", probeCount{12, 0, 1200})

	// Three losses on eth1 but only two sends seen yet: lost waits.
	for range 3 {
		acc.lost(b0)
	}
	acc.absorb(snap(map[string]uint64{"eth0": 1200, "eth1": 500}, ps(a0, "eth0", 2), ps(a1, "eth0", 1), ps(b0, "eth1", 5)))
	acc.flush(rec.observe)
	check("lost-ahead", "eth1", probeCount{5, 3, 500})
	acc.absorb(snap(map[string]uint64{"eth0": 1200, "eth1": 600}, ps(a0, "eth0", 2), ps(a1, "eth0", 1), ps(b0, "eth1", 6)))
	acc.flush(rec.observe)
	check("lost-caught-up", "eth1", probeCount{6, 4, 600})

	// A loss of a pair that was never running is not counted.
	acc.lost(pair("192.0.2.1", "192.0.2.2"))
	acc.absorb(snap(map[string]uint64{"eth0": 1200, "eth1": 600}, ps(a0, "eth0", 2), ps(a1, "eth0", 1), ps(b0, "eth1", 6)))
	acc.flush(rec.observe)
	check("unknown", "eth0", probeCount{12, 0, 1200})
	check("unknown", "eth1", probeCount{6, 4, 600})
}

// TestProbeAccountLostBounded: lost can lag sent but never exceed it, and
// catches up once the sends are seen.
func TestProbeAccountLostBounded(t *testing.T) {
	p := pair("10.1.0.2", "10.3.0.2")
	acc := newProbeAccount()
	rec := recorder{}
	acc.absorb(snap(nil, ps(p, "eth0", 1)))
	for range 4 {
		acc.lost(p)
	}
	acc.absorb(snap(nil, ps(p, "eth0", 2)))
	acc.flush(rec.observe)
	if c := rec["eth0"]; c.sent != 2 || c.lost != 2 {
		t.Fatalf("counters %+v, want sent 2 lost 2", *c)
	}
	acc.absorb(snap(nil, ps(p, "eth0", 4)))
	acc.flush(rec.observe)
	if c := rec["eth0"]; c.sent != 4 || c.lost != 4 {
		t.Fatalf("counters %+v, want sent 4 lost 4", *c)
	}
}

func TestStampKey(t *testing.T) {
	dir := t.TempDir()
	const keyHex = "00112233445566778899aabbccddeeff"
	good := filepath.Join(dir, "good.key")
	os.WriteFile(good, []byte(keyHex+"\n"), 0o600)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("0011"), 0o600)
	junk := filepath.Join(dir, "junk.key")
	os.WriteFile(junk, []byte("not hex"), 0o600)
	want, _ := hex.DecodeString(keyHex)
	tests := []struct {
		key     string
		want    []byte
		wantErr string
	}{
		{"", nil, ""},
		{keyHex, want, ""},
		{good, want, ""},
		{short, nil, "need at least 16"},
		{junk, nil, "not hex"},
		{filepath.Join(dir, "missing"), nil, "no such file"},
	}
	for _, tc := range tests {
		got, err := stampKey(policy.Reflector{Key: tc.key})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("stampKey(%q) error %v, want %q", tc.key, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("stampKey(%q) = %x, %v; want %x", tc.key, got, err, tc.want)
		}
	}
}

// TestReflectorFromConfig: the reflector the daemon starts from its config
// answers an authenticated STAMP request on loopback with the configured key,
// and drops one under another key.
func TestReflectorFromConfig(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	srv, err := listenReflector(netip.MustParseAddrPort("127.0.0.1:0"), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx) }()
	addr := srv.conn.LocalAddr().(*net.UDPAddr)

	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(seq uint32, k []byte) (probe.ReflectorPacket, error) {
		req, err := probe.AppendSender(nil, &probe.SenderPacket{Seq: seq, Timestamp: probe.NTPFromTime(time.Now())}, probe.STAMPAuthenticated, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return probe.ReflectorPacket{}, err
		}
		return probe.DecodeReflector(buf[:n], probe.STAMPAuthenticated, key)
	}
	rp, err := ask(7, key)
	if err != nil || rp.SenderSeq != 7 {
		t.Fatalf("reply %+v, %v; want sender seq 7", rp, err)
	}
	if _, err := ask(8, bytes.Repeat([]byte{0x43}, 32)); err == nil {
		t.Fatal("reflector answered a request under another key")
	}

	// A second reflector on the same port fails at start, not later.
	if _, err := listenReflector(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(addr.Port)), key, nil); err == nil {
		t.Fatal("second reflector on a port in use started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
}

// TestObserveFailover: the failover histogram gets one observation per
// forced move, from its detection to charon's ike-update, whether the steer
// was confirmed or charon moved the SA on its own after the steer timed out.
func TestObserveFailover(t *testing.T) {
	a := pair("10.1.0.2", "10.3.0.2")
	b := pair("10.2.0.2", "10.3.0.2")
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		obs  []mobike.Observation
		want uint64  // observations
		sum  float64 // seconds
	}{
		{"confirmed", []mobike.Observation{
			mobike.SteerRequested{Group: "lab", From: a, To: b, Forced: true, Cause: mobike.SteerPathDown},
			mobike.SAMoved{Conn: "lab", Group: "lab", From: a, To: b, Steered: true},
			mobike.SteerConfirmed{Group: "lab", Pair: b},
		}, 1, 2},
		{"moved-by-charon-after-timeout", []mobike.Observation{
			mobike.SteerRequested{Group: "lab", From: a, To: b, Forced: true, Cause: mobike.SteerPathDown},
			mobike.SteerFailed{Group: "lab", Pair: b, Cause: mobike.FailUnconfirmed},
			mobike.SAMoved{Conn: "lab", Group: "lab", From: a, To: b},
			mobike.SteerConfirmed{Group: "lab", Pair: b}, // a late one counts once
		}, 1, 2},
		{"unforced-steer", []mobike.Observation{
			mobike.SteerRequested{Group: "lab", From: b, To: a, Cause: mobike.SteerBetterPath},
			mobike.SteerConfirmed{Group: "lab", Pair: a},
		}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			dm := newDaemonMetrics()
			m, err := metrics.New(reg, dm, metrics.Options{})
			if err != nil {
				t.Fatal(err)
			}
			dm.m = m
			d := &daemon{forcedAt: map[string]time.Time{}}
			for i, o := range tc.obs {
				// one second between observations; detection at t0
				dm.observe(t0.Add(time.Duration(i)*time.Second), o, d)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "mobike_failover_duration_seconds" {
					continue
				}
				h := mf.Metric[0].GetHistogram()
				if h.GetSampleCount() != tc.want || h.GetSampleSum() != tc.sum {
					t.Fatalf("failover histogram count %d sum %v, want %d and %v", h.GetSampleCount(), h.GetSampleSum(), tc.want, tc.sum)
				}
			}
			if len(d.forcedAt) != 0 {
				t.Fatalf("pending detections left: %v", d.forcedAt)
			}
		})
	}
}

// Path series are per steering group: the members of a group share its
// pairs, so 3 connections to one gateway export that gateway's paths once,
// under the group's key, with peer indexes into the group's peer set.
func TestPathsPerSteeringGroup(t *testing.T) {
	c := mobike.New(mobike.Config{})
	now := time.Unix(1000, 0)
	ns := mobike.NetState{
		Links: []mobike.Link{{Index: 2, Name: "eth0", Kind: mobike.KindEthernet, Up: true}, {Index: 3, Name: "eth1", Kind: mobike.KindEthernet, Up: true}},
		Addrs: []mobike.Address{{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2}, {Prefix: netip.MustParsePrefix("10.2.0.2/24"), LinkIdx: 3}},
	}
	gw1, gw2, other := netip.MustParseAddr("10.3.0.2"), netip.MustParseAddr("10.4.0.2"), netip.MustParseAddr("10.9.0.2")
	c.Step(now, mobike.EvNetState{State: ns})
	c.Step(now, mobike.EvConns{Conns: []mobike.Conn{
		{Name: "a", RemoteAddrs: []netip.Addr{gw1, gw2}}, {Name: "b", RemoteAddrs: []netip.Addr{gw2}},
		{Name: "c", RemoteAddrs: []netip.Addr{gw1}}, {Name: "z", RemoteAddrs: []netip.Addr{other}},
	}})
	c.Step(now, mobike.EvSAList{})
	s := pathsAndConns(c.Snapshot())
	if len(s.Conns) != 4 {
		t.Errorf("%d connections, want 4", len(s.Conns))
	}
	got := map[string]bool{}
	for _, p := range s.Paths {
		got[fmt.Sprintf("%s/%d/%s", p.Conn, p.Peer, p.Uplink)] = true
	}
	want := map[string]bool{"a/0/eth0": true, "a/0/eth1": true, "a/1/eth0": true, "a/1/eth1": true, "z/0/eth0": true, "z/0/eth1": true}
	if len(s.Paths) != len(want) || !maps.Equal(got, want) {
		t.Errorf("paths %v (%d), want %v", got, len(s.Paths), want)
	}
}
