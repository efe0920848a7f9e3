package conform

import (
	"bytes"
	"context"
	"encoding/json"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobiked/mobiked/internal/ikeudp"
	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/ike/iketest"
)

var (
	l1  = netip.MustParseAddr("192.0.2.10")
	l2  = netip.MustParseAddr("192.0.2.20")
	p1  = netip.MustParseAddr("198.51.100.1")
	p2  = netip.MustParseAddr("198.51.100.2")
	nat = netip.MustParseAddr("203.0.113.1")
	psk = []byte("conform unit test key")
)

// fakeNet connects the suite to an iketest.Gateway that owns p1 and p2;
// packets from natted locals get the NAT's address and a port of their own.
type fakeNet struct {
	mu      sync.Mutex
	t       *testing.T
	gw      *iketest.Gateway
	ports   map[netip.Addr]uint16
	natted  map[netip.Addr]bool
	maps    map[netip.AddrPort]netip.AddrPort // inside -> outside
	rev     map[netip.AddrPort]netip.AddrPort
	blocked map[[2]netip.Addr]bool // local, peer
	recv    chan ikeudp.Datagram
}

func newFakeNet(t *testing.T, b iketest.Behaviour) *fakeNet {
	gid, _ := ike.ParseID("gw.test")
	var s [32]byte
	s[0] = 7
	return &fakeNet{t: t, gw: &iketest.Gateway{PSK: psk, ID: gid, Rand: mrand.NewChaCha8(s), B: b},
		ports: map[netip.Addr]uint16{l1: 41000, l2: 42000}, natted: map[netip.Addr]bool{},
		maps: map[netip.AddrPort]netip.AddrPort{}, rev: map[netip.AddrPort]netip.AddrPort{},
		blocked: map[[2]netip.Addr]bool{}, recv: make(chan ikeudp.Datagram, 1024)}
}

func (n *fakeNet) Local(a netip.Addr) (netip.AddrPort, bool) {
	p, ok := n.ports[a]
	return netip.AddrPortFrom(a, p), ok
}

func (n *fakeNet) Recv() <-chan ikeudp.Datagram { return n.recv }

func (n *fakeNet) Send(src, dst netip.AddrPort, msg []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.blocked[[2]netip.Addr{src.Addr(), dst.Addr()}] || (dst.Addr() != p1 && dst.Addr() != p2) {
		return nil
	}
	outside := src
	if n.natted[src.Addr()] {
		m, ok := n.maps[src]
		if !ok {
			m = netip.AddrPortFrom(nat, uint16(50000+len(n.maps)))
			n.maps[src], n.rev[m] = m, src
		}
		outside = m
	}
	resp, err := n.gw.Handle(bytes.Clone(msg), outside, dst)
	if err != nil {
		return nil // dropped: ignored or undecryptable
	}
	n.recv <- ikeudp.Datagram{Src: n.gw.ReplySource(msg, dst), Dst: src, Data: resp, At: time.Now()}
	return nil
}

// virtualClock jumps to every deadline at once: the fake network answers
// synchronously, so nothing is pending when the suite waits.
type virtualClock struct{ now time.Time }

func (c *virtualClock) Now() time.Time { return c.now }

func (c *virtualClock) After(d time.Duration) <-chan time.Time {
	if d > 0 {
		c.now = c.now.Add(d)
	}
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func run(t *testing.T, n *fakeNet, mod func(*Config)) *Result {
	t.Helper()
	id, _ := ike.ParseID("conform.test")
	var s [32]byte
	s[0] = 9
	cfg := Config{Peers: []netip.Addr{p1, p2}, Locals: []netip.Addr{l1, l2}, PSK: psk, ID: id,
		Timeout: time.Second, Tries: 3, Transport: n, Rand: mrand.NewChaCha8(s),
		Clock: &virtualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res.Report.WriteTable(&b)
	t.Logf("\n%s", b.String())
	return res
}

func want(t *testing.T, r *Report, id string, st Status, detail string) {
	t.Helper()
	c, ok := r.Check(id)
	if !ok {
		t.Fatalf("no check %s", id)
	}
	if c.Status != st || !strings.Contains(c.Detail, detail) {
		t.Errorf("%s = %s %q, want %s containing %q", id, c.Status, c.Detail, st, detail)
	}
}

func TestConformingGateway(t *testing.T) {
	n := newFakeNet(t, iketest.Behaviour{CheckNoNATs: true, Additional: []netip.Addr{p2}})
	n.natted[l2] = true
	res := run(t, n, nil)
	r := &res.Report
	for _, c := range r.Checks {
		if c.Status != Pass {
			t.Errorf("%s: %s %s", c.ID, c.Status, c.Detail)
		}
	}
	if !r.Passed() {
		t.Error("report not passed")
	}
	want(t, r, IDAddressList, Pass, "198.51.100.2")
	want(t, r, IDRR, Pass, "4/4 pairs")
	want(t, r, IDRR, Pass, "192.0.2.20->198.51.100.1, NAT here")
	want(t, r, IDUpdate, Pass, "from 192.0.2.20")
	want(t, r, IDUpdateNAT, Pass, "through the NAT")
	want(t, r, IDRetransmit, Pass, "identical")
	want(t, r, IDNoNATs, Pass, "UNEXPECTED_NAT_DETECTED")
	sas := n.gw.SAs()
	if len(sas) != 2 || !sas[0].Deleted || !sas[1].Deleted {
		t.Errorf("gateway SAs left: %v", sas)
	}
	if len(res.SAs) != 2 || res.SAs[0].Name != "main" || len(res.SAs[0].Datagrams) < 10 || res.SAs[0].Secrets.Suite.String() != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("records %+v", res.SAs)
	}
	// JSON shape of the issue: {"peer", "checks": [{"id","section","level","status","detail"}]}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	checks, _ := doc["checks"].([]any)
	first, _ := checks[0].(map[string]any)
	if doc["peer"] != "198.51.100.1" || len(doc) != 2 || len(checks) != len(Specs) || len(first) != 5 ||
		first["id"] != IDNegotiated || first["level"] != "MUST" || first["status"] != "PASS" || first["section"] != "RFC 4555 §3.2" {
		t.Errorf("json %s", buf.String())
	}
}

// What strongSwan does: NO_NATS_ALLOWED unchecked. A failed SHOULD does not
// fail the run.
func TestNoNATsUnchecked(t *testing.T) {
	n := newFakeNet(t, iketest.Behaviour{})
	n.natted[l2] = true
	r := &run(t, n, nil).Report
	want(t, r, IDNoNATs, Fail, "not checked")
	if !r.Passed() {
		t.Error("a failed SHOULD failed the run")
	}
}

func TestDeviations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      iketest.Behaviour
		mod    func(*Config)
		natB   bool
		id     string
		st     Status
		detail string
		passed bool
	}{
		{"no mobike", iketest.Behaviour{NoMOBIKE: true}, nil, false, IDNegotiated, Unsupported, "without MOBIKE_SUPPORTED", false},
		{"wrong psk", iketest.Behaviour{}, func(c *Config) { c.PSK = []byte("other") }, false, IDNegotiated, Fail, "AUTHENTICATION_FAILED", false},
		{"no address list", iketest.Behaviour{NoAddressList: true}, nil, false, IDAddressList, Unsupported, "no address list", true},
		{"no cookie2 echo", iketest.Behaviour{NoCookie2Echo: true}, nil, false, IDRR, Fail, "cookie2 mismatch", false},
		{"wrong cookie2", iketest.Behaviour{WrongCookie2: true}, nil, false, IDRR, Fail, "cookie2 mismatch", false},
		{"refuses updates", iketest.Behaviour{RefuseUpdates: true}, nil, false, IDUpdate, Fail, "UNACCEPTABLE_ADDRESSES", false},
		{"refuses lists", iketest.Behaviour{RefuseLists: true}, nil, false, IDListUpdate, Fail, "UNACCEPTABLE_ADDRESSES", false},
		{"re-encrypts", iketest.Behaviour{ReEncrypt: true}, nil, false, IDRetransmit, Fail, "different bytes", false},
		{"no nat-d", iketest.Behaviour{NoNATD: true}, nil, true, IDUpdateNAT, Fail, "no return routability answer carried NAT-D", false},
		{"silent", iketest.Behaviour{SilentInfo: true}, nil, false, IDRR, Fail, "IKE SA closed", false},
		{"no nat", iketest.Behaviour{}, nil, false, IDUpdateNAT, Skipped, "no NAT", true},
		{"answers from its SA address", iketest.Behaviour{AnswerFromSA: true}, nil, false, IDRR, Fail,
			"192.0.2.10->198.51.100.2 (answered on 192.0.2.10:41000<->198.51.100.1:4500 instead)", false},
		{"one local", iketest.Behaviour{}, func(c *Config) { c.Locals = c.Locals[:1] }, false, IDUpdate, Skipped, "second local", true},
		{"child sa", iketest.Behaviour{}, func(c *Config) { c.Child = ike.ChildAlways }, false, IDNegotiated, Pass, "CHILD_SA accepted", true},
		{"childless", iketest.Behaviour{Childless: true}, nil, false, IDNegotiated, Pass, "childless", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNet(t, tc.b)
			n.natted[l2] = tc.natB
			r := &run(t, n, tc.mod).Report
			want(t, r, tc.id, tc.st, tc.detail)
			if r.Passed() != tc.passed {
				t.Errorf("passed = %t, want %t", r.Passed(), tc.passed)
			}
		})
	}
}

// A gateway that never answers: no IKE SA, the rest skipped.
func TestSilentGateway(t *testing.T) {
	n := newFakeNet(t, iketest.Behaviour{})
	n.blocked[[2]netip.Addr{l1, p1}] = true
	r := &run(t, n, nil).Report
	want(t, r, IDNegotiated, Fail, "no IKE SA: no answer from 198.51.100.1:500")
	want(t, r, IDDelete, Skipped, "no IKE SA")
	if r.Passed() {
		t.Error("passed")
	}
}

// A pair that does not answer fails return routability and names the pair;
// the IKE SA survives on its own pair and the other checks still run.
func TestBlockedPair(t *testing.T) {
	n := newFakeNet(t, iketest.Behaviour{})
	n.blocked[[2]netip.Addr{l2, p2}] = true
	r := &run(t, n, nil).Report
	want(t, r, IDRR, Fail, "192.0.2.20->198.51.100.2 (no answer on the pair)")
	want(t, r, IDUpdate, Pass, "accepted")
	want(t, r, IDDelete, Pass, "answered")
}

func TestConfigErrors(t *testing.T) {
	n := newFakeNet(t, iketest.Behaviour{})
	id, _ := ike.ParseID("x")
	good := Config{Peers: []netip.Addr{p1}, Locals: []netip.Addr{l1}, PSK: psk, ID: id, Transport: n}
	for name, mod := range map[string]func(*Config){
		"no peer":     func(c *Config) { c.Peers = nil },
		"no local":    func(c *Config) { c.Locals = nil },
		"no psk":      func(c *Config) { c.PSK = nil },
		"no id":       func(c *Config) { c.ID = ike.ID{} },
		"no socket":   func(c *Config) { c.Locals = []netip.Addr{netip.MustParseAddr("192.0.2.99")} },
		"family":      func(c *Config) { c.Peers = []netip.Addr{netip.MustParseAddr("2001:db8::1")} },
		"mixed peers": func(c *Config) { c.Peers = append(c.Peers, netip.MustParseAddr("2001:db8::1")) },
	} {
		c := good
		mod(&c)
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
