package mobike

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mobiked/mobiked/policy"
)

func watchOf(acts []Action) (ActTrafficWatch, bool) {
	for _, a := range acts {
		if w, ok := a.(ActTrafficWatch); ok {
			return w, true
		}
	}
	return ActTrafficWatch{}, false
}

func TestTrafficWatchList(t *testing.T) {
	c := New(Config{})
	c.Step(at(0), EvNetState{State: laptopNet(), Reasons: []NetReason{NetResync}})
	c.Step(at(0), EvConns{Conns: []Conn{{Name: "office", RemoteAddrs: []netip.Addr{ip("10.3.0.2")}}}})
	acts := c.Step(at(0), EvSAList{SAs: []SA{sa(2, pEth, true), sa(1, pEth, true)}})
	w, ok := watchOf(acts)
	if !ok || len(w.SAs) != 1 || w.SAs[0] != (SARef{Conn: "office", UniqueID: 1}) {
		t.Fatalf("watch %+v (%t), want office#1 only (one SA per group)", w, ok)
	}
	// Probe results and a steer change nothing.
	c.Step(at(0.01), good(pEth, at(0.01)))
	c.Step(at(0.03), good(pWlan, at(0.03)))
	c.Step(at(2), lost(pEth, at(2), 3))
	if _, ok := watchOf(c.Step(at(2.01), good(pWlan, at(2.01)))); ok {
		t.Error("a steer re-emitted the watch")
	}
	// The watched SA goes: the next one stands in; the last: none.
	if w, ok := watchOf(c.Step(at(3), EvSADown{UniqueID: 1})); !ok || len(w.SAs) != 1 || w.SAs[0].UniqueID != 2 {
		t.Errorf("after SA 1 went: %+v %t", w, ok)
	}
	if w, ok := watchOf(c.Step(at(3), EvSADown{UniqueID: 2})); !ok || len(w.SAs) != 0 {
		t.Errorf("after the last SA went: %+v %t", w, ok)
	}
}

// traffic returns a reading of office#1's counters.
func trafficAt(s float64, in, out uint64) EvTraffic {
	return EvTraffic{SA: SARef{Conn: "office", UniqueID: 1}, At: at(s), Source: CounterSourceXFRM, PacketsIn: in, PacketsOut: out, BytesIn: 100 * in, BytesOut: 100 * out}
}

func TestTrafficHint(t *testing.T) {
	type read struct {
		s       float64
		in, out uint64
	}
	// SRTT is 10 ms: the hint needs minSilence (100 ms) of sending without
	// receiving, after the peer has answered before; the sending is taken
	// to start after the previous reading.
	tests := []struct {
		name  string
		reads []read
		hint  float64   // the read that asks for the burst (0 = none)
		vici  []float64 // reads from CounterSourceVICI (others: XFRM)
		set2  []float64 // reads of another set of CHILD_SAs
	}{
		{"answers: no hint", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 30, 30}, {1.3, 40, 40}}, 0, nil, nil},
		{"silence after answers", []read{{1, 10, 10}, {1.1, 20, 20}, {1.15, 20, 25}, {1.2, 20, 30}, {1.3, 20, 40}}, 1.2, nil, nil},
		{"hint once per silence", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 20, 30}, {1.3, 20, 40}, {1.4, 20, 50}}, 1.2, nil, nil},
		{"one-way stream never answered", []read{{1, 0, 10}, {1.1, 0, 20}, {1.2, 0, 30}, {1.5, 0, 40}}, 0, nil, nil},
		{"idle: nothing sent", []read{{1, 10, 10}, {1.1, 20, 20}, {1.5, 20, 20}, {2, 20, 20}}, 0, nil, nil},
		{"counters reset (rekey)", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 0, 5}, {1.25, 0, 8}}, 0, nil, nil},
		// The source switches (kernel states gone: VICI; back): charon's
		// counters may be higher for out and equal for in, which compared
		// with the kernel's would be a silence; not compared, no hint.
		{"source switch", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 20, 30}, {1.35, 20, 30}, {1.5, 20, 40}, {1.7, 20, 40}}, 0, []float64{1.2, 1.35}, nil},
		// A rekey whose new CHILD_SA counted as much inbound as the old one
		// and more outbound: another set, not compared.
		{"another set of CHILD_SAs", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 20, 30}, {1.35, 20, 30}}, 0, nil, []float64{1.2, 1.35}},
		{"silence after a switch still hints", []read{{1, 10, 10}, {1.1, 20, 20}, {1.2, 30, 30}, {1.3, 30, 40}, {1.5, 30, 50}}, 1.3, []float64{1.1, 1.2, 1.3, 1.5}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t, policy.Settings{}, true)
			var hintAt float64
			for _, r := range tc.reads {
				ev := trafficAt(r.s, r.in, r.out)
				if slices.Contains(tc.vici, r.s) {
					ev.Source = CounterSourceVICI
				}
				if slices.Contains(tc.set2, r.s) {
					ev.Set = 2
				}
				acts := c.Step(at(r.s), ev)
				if got := kinds(acts); got == "confirm "+pEth.String() {
					if hintAt != 0 {
						t.Fatalf("second burst at %v", r.s)
					}
					hintAt = r.s
				} else if got != "" {
					t.Fatalf("at %v: %s", r.s, got)
				}
			}
			if hintAt != tc.hint {
				t.Errorf("burst asked at %v, want %v", hintAt, tc.hint)
			}
			if tc.hint != 0 && !traceHas(c.TakeTrace(), "traffic-hint office office#1 on 10.1.0.2->10.3.0.2") {
				t.Error("no traffic-hint observation")
			}
		})
	}
}

// A hint asks for a burst only: the pair goes down on the burst's losses,
// as usual; a reading of an SA that is not watched is ignored.
func TestTrafficHintIsOnlyAHint(t *testing.T) {
	c := setup(t, policy.Settings{}, true)
	c.Step(at(1), trafficAt(1, 10, 10))
	c.Step(at(1.1), trafficAt(1.1, 20, 20))
	acts := c.Step(at(1.3), trafficAt(1.3, 20, 30))
	if _, ok := routed(acts, "office"); ok {
		t.Fatalf("moved on a hint: %s", kinds(acts))
	}
	other := trafficAt(1.4, 0, 50)
	other.SA.UniqueID = 9
	if acts := c.Step(at(1.4), other); len(acts) != 0 {
		t.Errorf("unwatched SA: %s", kinds(acts))
	}
	// While the pair's own burst is in flight, no second one is asked for.
	c2 := setup(t, policy.Settings{}, true)
	ev := lost(pEth, at(1.05), 1)
	ev.Stats.Confirming = true
	ev.Stats.LastReply = at(1)
	c2.Step(at(1.05), ev)
	c2.Step(at(1), trafficAt(1, 10, 10))
	c2.Step(at(1.1), trafficAt(1.1, 20, 20))
	if got := kinds(c2.Step(at(1.3), trafficAt(1.3, 20, 30))); got != "" {
		t.Errorf("burst in flight: got %s", got)
	}
}

func TestChildSet(t *testing.T) {
	if ChildSet([]uint64{1, 2}) != ChildSet([]uint64{2, 1}) {
		t.Error("order matters")
	}
	if ChildSet([]uint64{1, 2}) == ChildSet([]uint64{1, 3}) || ChildSet([]uint64{1}) == ChildSet(nil) || ChildSet(nil) == 0 {
		t.Error("different sets collide")
	}
}
