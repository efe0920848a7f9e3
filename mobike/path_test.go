package mobike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/policy"
)

// TestTransitionTable checks the pair state machine (the diagram above
// PathState) cell by cell. "-" means the input changes nothing.
func TestTransitionTable(t *testing.T) {
	const (
		U = PathUnknown
		T = PathTesting
		O = PathOperational
		G = PathDegraded
		D = PathDown
		X = PathState(255) // no transition
	)
	//                        probe-start good breach loss down gone
	table := map[PathState][numInputs]PathState{
		U: {T, O, G, X, D, D},
		T: {X, O, G, X, D, D},
		O: {X, X, G, X, D, D},
		G: {X, O, X, X, D, D},
		D: {X, T, T, X, X, X},
	}
	for s := PathUnknown; s <= PathDown; s++ {
		for in := pathInput(0); in < numInputs; in++ {
			want := table[s][in]
			got, ok := transition(s, in)
			if want == X {
				if ok || got != s {
					t.Errorf("%s --%s--> %s, want no transition", s, in, got)
				}
				continue
			}
			if !ok || got != want {
				t.Errorf("%s --%s--> %s (ok=%t), want %s", s, in, got, ok, want)
			}
		}
	}
	// Down is left only through testing.
	for in := pathInput(0); in < numInputs; in++ {
		if got, ok := transition(PathDown, in); ok && got != PathTesting {
			t.Errorf("down --%s--> %s", in, got)
		}
	}
}

func TestClassify(t *testing.T) {
	pp := policy.PathPolicy{}.WithDefaults()
	tests := []struct {
		name string
		ev   EvProbeResult
		in   pathInput
		why  PathReason
	}{
		{"good", EvProbeResult{OK: true, RTT: 10 * time.Millisecond, Stats: PathStats{Sent: 5, SRTT: 10 * time.Millisecond}}, inGood, ReasonReply},
		{"good rtt from event", EvProbeResult{OK: true, RTT: 10 * time.Millisecond}, inGood, ReasonReply},
		{"slow", EvProbeResult{OK: true, Stats: PathStats{SRTT: time.Second}}, inBreach, ReasonSLABreach},
		{"lossy", EvProbeResult{OK: true, Stats: PathStats{Sent: 10, LossRatio: 0.3}}, inBreach, ReasonSLABreach},
		{"one loss", EvProbeResult{Stats: PathStats{Sent: 1, LossRatio: 1, ConsecLost: 1}}, inLoss, ReasonNone},
		{"K losses", EvProbeResult{Stats: PathStats{Sent: 3, LossRatio: 1, ConsecLost: 3}}, inDown, ReasonConsecLoss},
		{"K losses, burst in flight", EvProbeResult{Stats: PathStats{Sent: 4, LossRatio: 1, ConsecLost: 3, Confirming: true}}, inLoss, ReasonNone},
		{"burst lost", EvProbeResult{Stats: PathStats{Sent: 5, LossRatio: 1, ConsecLost: 4}}, inDown, ReasonConsecLoss},
		{"window loss", EvProbeResult{OK: true, Stats: PathStats{Sent: 10, LossRatio: 0.6}}, inDown, ReasonWindowLoss},
		{"window loss needs samples", EvProbeResult{OK: true, Stats: PathStats{Sent: 2, LossRatio: 0.5, SRTT: time.Millisecond}}, inBreach, ReasonSLABreach},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, why := classify(tc.ev, pp)
			if in != tc.in || why != tc.why {
				t.Errorf("classify = %s/%s, want %s/%s", in, why, tc.in, tc.why)
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	tests := []struct {
		addr  string
		flags AddrFlags
		want  bool
	}{
		{"10.1.0.2/24", 0, true},
		{"192.0.2.1/24", AddrDeprecated, true},
		{"2001:db8::1/64", 0, true},
		{"fd00::1/64", 0, true}, // ULA
		{"2001:db8::1/64", AddrTentative, false},
		{"2001:db8::1/64", AddrDADFailed, false},
		{"fe80::1/64", 0, false},
		{"169.254.1.1/16", 0, false},
		{"127.0.0.1/8", 0, false},
		{"::1/128", 0, false},
		{"ff02::1/128", 0, false},
		{"0.0.0.0/0", 0, false},
	}
	for _, tc := range tests {
		a := Address{Prefix: netip.MustParsePrefix(tc.addr), LinkIdx: 2, Flags: tc.flags}
		if got := Available(a); got != tc.want {
			t.Errorf("Available(%s, %b) = %t, want %t", tc.addr, tc.flags, got, tc.want)
		}
	}
	a := Address{Prefix: netip.MustParsePrefix("10.1.0.2/24"), LinkIdx: 2}
	up := policy.UplinkPolicy{}
	if !LocallyOperational(a, Link{Index: 2, Up: true}, up) {
		t.Error("up link: not locally operational")
	}
	if LocallyOperational(a, Link{Index: 2, Up: false}, up) {
		t.Error("down link: locally operational")
	}
	if LocallyOperational(a, Link{Index: 2, Up: true}, policy.UplinkPolicy{Exclude: true}) {
		t.Error("excluded uplink: locally operational")
	}
	if LocallyOperational(a, Link{Index: 3, Up: true}, up) {
		t.Error("other link: locally operational")
	}
}
