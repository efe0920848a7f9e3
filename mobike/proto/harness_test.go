package proto

import (
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The harness is a deterministic little internet: virtual time, a per-packet
// latency, directional blocks between addresses, NATs that rewrite the
// source address and port, rewriters that edit packets in flight, and an
// attacker that injects packets. Packets cross it as bytes (wire.Marshal
// then wire.Parse), so the codec is exercised too.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ad(s string) netip.Addr     { return netip.MustParseAddr(s) }
func pr(l, r string) Pair        { return Pair{Local: ap(l), Remote: ap(r)} }

type node struct {
	name  string
	peer  *Peer
	addrs []netip.Addr // addresses the node currently owns
	obs   []Output     // every non-Send output
}

type flight struct {
	at       time.Time
	seq      int
	src, dst netip.AddrPort
	b        []byte // nil for ESP
	from     string
}

type natBox struct {
	inside, public netip.Addr
	next           uint16
	out            map[netip.AddrPort]netip.AddrPort
	in             map[netip.AddrPort]netip.AddrPort
}

type world struct {
	t       *testing.T
	now     time.Time
	nodes   []*node
	queue   []*flight
	seq     int
	latency time.Duration
	blocked map[[2]netip.Addr]bool
	nats    []*natBox
	// rewrite may edit a message in flight (after NAT); returning false drops it.
	rewrite func(f *flight, m *wire.Message) bool
	// delay adds latency to a packet.
	delay func(f *flight, m *wire.Message) time.Duration
	trace []string
	lost  map[netip.Addr][]string // packets to addresses nobody owns, by kind
}

func seeded(seed uint64) *mrand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return mrand.NewChaCha8(s)
}

func newWorld(t *testing.T) *world {
	return &world{t: t, now: t0, latency: 10 * time.Millisecond, blocked: map[[2]netip.Addr]bool{}, lost: map[netip.Addr][]string{}}
}

func (w *world) addNode(name string, cfg Config, addrs ...string) *node {
	w.t.Helper()
	n := &node{name: name}
	for _, a := range addrs {
		n.addrs = append(n.addrs, ad(a))
	}
	if cfg.LocalAddrs == nil {
		cfg.LocalAddrs = slices.Clone(n.addrs)
	}
	if cfg.Rand == nil {
		cfg.Rand = seeded(uint64(len(w.nodes) + 1))
	}
	p, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	n.peer = p
	w.nodes = append(w.nodes, n)
	return n
}

func (w *world) addNAT(inside, public string) {
	w.nats = append(w.nats, &natBox{inside: ad(inside), public: ad(public), next: 40000,
		out: map[netip.AddrPort]netip.AddrPort{}, in: map[netip.AddrPort]netip.AddrPort{}})
}

func (w *world) block(a, b string)     { w.blocked[[2]netip.Addr{ad(a), ad(b)}] = true }
func (w *world) unblock(a, b string)   { delete(w.blocked, [2]netip.Addr{ad(a), ad(b)}) }
func (w *world) blockBoth(a, b string) { w.block(a, b); w.block(b, a) }

func (w *world) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf("%8.3fs ", w.now.Sub(t0).Seconds())+fmt.Sprintf(format, args...))
}

// apply records n's outputs and puts its packets on the network.
func (w *world) apply(n *node, outs []Output) {
	for _, o := range outs {
		w.logf("%s %s", n.name, o)
		s, ok := o.(Send)
		if !ok {
			n.obs = append(n.obs, o)
			continue
		}
		if !slices.Contains(n.addrs, s.Src.Addr()) {
			w.logf("net: %s does not own %s, dropped", n.name, s.Src.Addr())
			continue
		}
		b, err := s.Msg.Marshal()
		if err != nil {
			w.t.Fatalf("marshal: %v", err)
		}
		w.enqueue(&flight{src: s.Src, dst: s.Dst, b: b, from: n.name})
	}
}

func (w *world) enqueue(f *flight) {
	for _, nb := range w.nats {
		if f.src.Addr() != nb.inside {
			continue
		}
		m, ok := nb.out[f.src]
		if !ok {
			m = netip.AddrPortFrom(nb.public, nb.next)
			nb.next++
			nb.out[f.src], nb.in[m] = m, f.src
		}
		f.src = m
	}
	var msg *wire.Message
	if f.b != nil {
		var err error
		if msg, err = wire.Parse(f.b); err != nil {
			w.t.Fatalf("parse: %v", err)
		}
	}
	if w.rewrite != nil && msg != nil {
		if !w.rewrite(f, msg) {
			w.logf("net: %s->%s %s dropped by rewriter", f.src, f.dst, FormatMessage(msg))
			return
		}
		b, err := msg.Marshal()
		if err != nil {
			w.t.Fatalf("marshal: %v", err)
		}
		f.b = b
	}
	d := w.latency
	if w.delay != nil && msg != nil {
		d += w.delay(f, msg)
	}
	w.seq++
	f.seq, f.at = w.seq, w.now.Add(d)
	w.queue = append(w.queue, f)
}

// inject puts an attacker's packet on the network.
func (w *world) inject(src, dst netip.AddrPort, m *wire.Message) {
	b, err := m.Marshal()
	if err != nil {
		w.t.Fatal(err)
	}
	w.logf("attacker injects %s->%s %s", src, dst, FormatMessage(m))
	w.enqueue(&flight{src: src, dst: dst, b: b, from: "attacker"})
}

// esp sends one ESP packet on n's current IPsec pair.
func (w *world) esp(n *node) {
	p, _ := n.peer.TrafficPair()
	if !slices.Contains(n.addrs, p.Local.Addr()) {
		return
	}
	w.enqueue(&flight{src: p.Local, dst: p.Remote, from: n.name})
}

func (w *world) deliver(f *flight) {
	kind := "esp"
	var msg *wire.Message
	if f.b != nil {
		var err error
		if msg, err = wire.Parse(f.b); err != nil {
			w.t.Fatalf("parse: %v", err)
		}
		kind = FormatMessage(msg)
	}
	if w.blocked[[2]netip.Addr{f.src.Addr(), f.dst.Addr()}] {
		if msg != nil {
			w.logf("net: %s->%s %s lost (blocked)", f.src, f.dst, kind)
		}
		return
	}
	dst := f.dst
	for _, nb := range w.nats {
		if dst.Addr() == nb.public {
			in, ok := nb.in[dst]
			if !ok {
				w.logf("net: %s->%s no nat mapping", f.src, f.dst)
				return
			}
			dst = in
		}
	}
	for _, n := range w.nodes {
		if !slices.Contains(n.addrs, dst.Addr()) {
			continue
		}
		if msg == nil {
			w.apply(n, n.peer.HandleESP(w.now, f.src, dst))
			return
		}
		w.apply(n, n.peer.Handle(w.now, Packet{Src: f.src, Dst: dst, Msg: msg}))
		return
	}
	w.lost[dst.Addr()] = append(w.lost[dst.Addr()], kind)
	if msg != nil {
		w.logf("net: %s->%s %s reached no peer", f.src, dst, kind)
	}
}

// run advances virtual time to d after t0, delivering packets and firing
// timers in order.
func (w *world) run(until time.Duration) {
	end := t0.Add(until)
	for i := 0; i < 100000; i++ {
		var next time.Time
		var which *node
		var fl *flight
		for _, f := range w.queue {
			if fl == nil || f.at.Before(fl.at) || (f.at.Equal(fl.at) && f.seq < fl.seq) {
				fl = f
			}
		}
		if fl != nil {
			next = fl.at
		}
		for _, n := range w.nodes {
			if d, ok := n.peer.NextDeadline(); ok && (next.IsZero() || d.Before(next)) {
				next, which, fl = d, n, nil
			}
		}
		if next.IsZero() || next.After(end) {
			w.now = end
			return
		}
		if next.After(w.now) {
			w.now = next
		}
		if which != nil {
			w.apply(which, which.peer.OnTimer(w.now))
			continue
		}
		w.queue = slices.DeleteFunc(w.queue, func(f *flight) bool { return f == fl })
		w.deliver(fl)
	}
	w.t.Fatal("run: event limit")
}

func (w *world) call(n *node) func([]Output, error) {
	return func(outs []Output, err error) {
		w.t.Helper()
		if err != nil {
			w.t.Fatalf("%s: %v", n.name, err)
		}
		w.logf("%s <- api", n.name)
		w.apply(n, outs)
	}
}

// establish runs IKE_SA_INIT and IKE_AUTH from i on pair.
func (w *world) establish(i, r *node, pair Pair) {
	w.t.Helper()
	w.call(i)(i.peer.Start(w.now, pair))
	w.run(w.now.Sub(t0) + time.Second)
	if !i.peer.Established() || !r.peer.Established() {
		w.t.Fatalf("not established:\n%s", strings.Join(w.trace, "\n"))
	}
}

func (w *world) golden() {
	w.t.Helper()
	got := strings.Join(w.trace, "\n") + "\n"
	path := filepath.Join("testdata", w.t.Name()+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			w.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		w.t.Fatalf("%v (run with -update to create)", err)
	}
	if string(want) != got {
		w.t.Errorf("trace differs from %s (run with -update after review)\n--- got ---\n%s", path, got)
	}
}

func has[T Output](obs []Output) (T, bool) {
	for _, o := range obs {
		if x, ok := o.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}

func count[T Output](obs []Output) int {
	c := 0
	for _, o := range obs {
		if _, ok := o.(T); ok {
			c++
		}
	}
	return c
}

// index of the first observation whose String contains s, or -1.
func indexOf(obs []Output, s string) int {
	for i, o := range obs {
		if strings.Contains(o.String(), s) {
			return i
		}
	}
	return -1
}

func wantTraffic(t *testing.T, n *node, want Pair, encap bool) {
	t.Helper()
	got, e := n.peer.TrafficPair()
	if got != want || e != encap {
		t.Errorf("%s traffic = %s encap=%t, want %s encap=%t", n.name, got, e, want, encap)
	}
}

func wantIKE(t *testing.T, n *node, want Pair) {
	t.Helper()
	if got := n.peer.IKEPair(); got != want {
		t.Errorf("%s ike = %s, want %s", n.name, got, want)
	}
}
