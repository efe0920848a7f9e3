package mobike

import (
	"net/netip"
	"testing"

	"github.com/mobiked/mobiked/policy"
)

// A connection that forbids NAT and probes with STAMP does not move onto a
// pair whose NAT verdict has not arrived yet; once the verdict says no NAT,
// it moves.
func TestNATForbidWaitsForVerdict(t *testing.T) {
	pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", NAT: policy.NATForbid, Method: policy.MethodSTAMP, HoldDown: policy.NoHoldDown}}}
	c := setup(t, pol, true)
	unknown := good(pWlan, at(0.5))
	unknown.Stats.NAT = NATUnknown
	c.Step(at(0.5), unknown)
	acts := c.Step(at(2), lost(pEth, at(2), 3))
	if st, ok := routed(acts, "office"); ok {
		t.Fatalf("steered onto %s with an unknown NAT verdict: %s", st.Pair, kinds(acts))
	}
	if got := kinds(acts); got != "alert nat-forbidden" {
		t.Errorf("got %q, want the nat-forbidden alert", got)
	}
	acts = c.Step(at(2.5), good(pWlan, at(2.5))) // verdict: no NAT
	if got, want := kinds(acts), "start 10.2.0.2->10.3.0.2 active; routing office@10.2.0.2->10.3.0.2"; got != want {
		t.Fatalf("after the verdict: got %q, want %q", got, want)
	}
}

// With ICMP probes no verdict ever comes: nat: forbid cannot hold a move.
func TestNATForbidICMPMovesWithoutVerdict(t *testing.T) {
	pol := policy.Settings{Conns: []policy.ConnPolicy{{Name: "office", NAT: policy.NATForbid, Method: policy.MethodICMP, HoldDown: policy.NoHoldDown}}}
	c := setup(t, pol, true)
	unknown := good(pWlan, at(0.5))
	unknown.Stats.NAT = NATUnknown
	c.Step(at(0.5), unknown)
	c.Step(at(2), lost(pEth, at(2), 3))
	unknown = good(pWlan, at(2.01)) // the confirmation's reply
	unknown.Stats.NAT = NATUnknown
	acts := c.Step(at(2.01), unknown)
	if got, want := kinds(acts), "start 10.2.0.2->10.3.0.2 active; routing office@10.2.0.2->10.3.0.2"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// A forced move keeps the SA's address family when a pair of that family is
// usable, even if a pair of the other family ranks higher (here: IPv6 on the
// preferred uplink vs IPv4 on the other one). Cross-family is a fallback.
func TestForcedMoveKeepsFamily(t *testing.T) {
	ns := laptopNet()
	ns.Addrs = append(ns.Addrs, Address{Prefix: netip.MustParsePrefix("2001:db8:1::2/64"), LinkIdx: 2})
	ns.Gateways = append(ns.Gateways, Gateway{LinkIdx: 2, Via: ip("2001:db8:1::1")})
	c := New(Config{})
	c.Step(at(0), EvNetState{State: ns})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2"), ip("2001:db8:3::2")}}}})
	c.Step(at(0), EvSAList{SAs: []SA{sa(1, pEth, true)}})
	v6 := mkPair("2001:db8:1::2", "2001:db8:3::2")
	for _, p := range []Pair{pEth, pWlan, v6} {
		c.Step(at(0.5), good(p, at(0.5)))
	}
	c.TakeTrace()
	c.Step(at(2), lost(pEth, at(2), 3))
	var acts []Action
	for _, p := range []Pair{pWlan, v6} {
		acts = append(acts, c.Step(at(2.01), good(p, at(2.01)))...)
	}
	if st, ok := routed(acts, "office"); !ok || st.Pair != pWlan {
		t.Fatalf("got %s, want the IPv4 pair on wlan0, not %s", kinds(acts), v6)
	}
	// With no IPv4 pair left, IPv6 is the fallback.
	c.Step(at(2.5), lost(pWlan, at(2.5), 3))
	acts = c.Step(at(2.51), good(v6, at(2.51)))
	if st, ok := routed(acts, "office"); !ok || st.Pair != v6 {
		t.Fatalf("fallback: got %s, want %s", kinds(acts), v6)
	}
}
