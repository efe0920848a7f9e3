package sim

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Scale is a synthetic large setup for measuring the core: Uplinks ethernet
// uplinks, Conns connections each towards its own gateway with PeerAddrs
// addresses (so Conns steering groups and Uplinks·Conns·PeerAddrs candidate
// pairs, each probed), and SAs initiator IKE_SAs spread round-robin over the
// connections, all on the first uplink. RunScale brings it up, lets the
// probes settle, blackholes the first uplink and follows the failover.
type Scale struct {
	SAs, Conns, Uplinks, PeerAddrs int
	Seed                           uint64
	Settle, After                  time.Duration // virtual time before and after the blackhole; 0 = 70 s, 30 s
	Probes                         ProbeModel    // the simulated prober (zero: the legacy model)
}

// ScaleResult is what RunScale measured. Steps are the events the core
// decided (Step calls); Time is the wall-clock time spent in Step.
type ScaleResult struct {
	Groups, Pairs          int
	SetupSteps, MoveSteps  int
	SetupTime, MoveTime    time.Duration
	Steers, RoutingStates  int           // SteerRequested observations and routing states emitted after the blackhole
	MaxGroupSteers         int           // the most steers one group made after the blackhole
	Moved                  int           // SAs off the blackholed uplink at the end
	AllMoved               time.Duration // virtual time from the blackhole to the last SA's move (0: not all moved)
	ProbeResults, SAEvents int           // of MoveSteps
}

// DecisionsPerSecond is the core's throughput: events decided per second of
// time spent in Step, over both phases.
func (r ScaleResult) DecisionsPerSecond() float64 {
	t := (r.SetupTime + r.MoveTime).Seconds()
	if t == 0 {
		return 0
	}
	return float64(r.SetupSteps+r.MoveSteps) / t
}

// gatewayAddr is address k of gateway g.
func gatewayAddr(g, k int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, byte(16 + g>>8), byte(g), byte(k + 1)})
}

// NewWorld builds the scale world (not started).
func (s Scale) NewWorld() *World {
	w := New(Options{Seed: s.Seed, Quiet: true, Probes: s.Probes})
	for u := 0; u < s.Uplinks; u++ {
		w.AddUplink(UplinkSpec{Name: fmt.Sprintf("eth%d", u), Kind: mobike.KindEthernet,
			Addrs: []string{fmt.Sprintf("10.%d.0.2/16", u+1)}, Gateways: []string{fmt.Sprintf("10.%d.0.1", u+1)}, Metric: 100 + u})
	}
	for c := 0; c < s.Conns; c++ {
		var peers []string
		for k := 0; k < s.PeerAddrs; k++ {
			peers = append(peers, gatewayAddr(c, k).String())
		}
		w.Charon.AddConn(fmt.Sprintf("c%04d", c), peers...)
	}
	for i := 0; i < s.SAs; i++ {
		w.Charon.Initiate(fmt.Sprintf("c%04d", i%s.Conns), true)
	}
	return w
}

// RunScale runs the scenario on w (from NewWorld).
func (s Scale) RunScale(w *World) ScaleResult {
	settle, after := s.Settle, s.After
	if settle == 0 {
		settle = 70 * time.Second
	}
	if after == 0 {
		after = 30 * time.Second
	}
	var r ScaleResult
	var blackholed bool
	var at time.Time
	eth0 := w.addrs[0].Prefix.Addr()
	onEth0 := 0                // SAs on eth0 at the blackhole
	moved := map[uint32]bool{} // of those, the ones now elsewhere
	groupSteers := map[string]int{}
	w.OnEvent = func(ev mobike.Event) {
		if !blackholed {
			return
		}
		switch ev.(type) {
		case mobike.EvProbeResult:
			r.ProbeResults++
		case mobike.EvIKEUpdate, mobike.EvSAUp, mobike.EvSADown, mobike.EvSARekey, mobike.EvSAList:
			r.SAEvents++
		}
	}
	w.OnObservation = func(o mobike.Observation) {
		if !blackholed {
			return
		}
		switch o := o.(type) {
		case mobike.SteerRequested:
			r.Steers++
			groupSteers[o.Group]++
		case mobike.SAMoved:
			if o.From.Local == eth0 && o.To.Local != eth0 {
				moved[o.ID] = true
			} else if o.To.Local == eth0 {
				delete(moved, o.ID)
			}
			if len(moved) == onEth0 && r.AllMoved == 0 {
				r.AllMoved = max(w.Now.Sub(at), time.Nanosecond)
			}
		}
	}
	w.Check = func(acts []mobike.Action) {
		for _, a := range acts {
			if _, ok := a.(mobike.ActRouting); ok && blackholed {
				r.RoutingStates++
			}
		}
	}
	w.Start()
	w.Run(settle)
	r.SetupSteps, r.SetupTime = w.Steps(), w.StepTime
	st := w.Ctl.Snapshot()
	r.Pairs = len(st.Pairs)
	groups := map[string]bool{}
	for _, c := range st.Conns {
		if c.Group != "" {
			groups[c.Group] = true
		}
	}
	r.Groups = len(groups)

	for _, sa := range w.Charon.sas {
		if sa.Local.Addr() == eth0 {
			onEth0++
		}
	}
	blackholed, at = true, w.Now
	w.SetLinkImpair("eth0", Impair{Blackhole: true})
	w.Run(after)
	r.MoveSteps, r.MoveTime = w.Steps()-r.SetupSteps, w.StepTime-r.SetupTime
	for _, sa := range w.Charon.sas {
		if sa.Local.Addr() != eth0 {
			r.Moved++
		}
	}
	for _, n := range groupSteers {
		r.MaxGroupSteers = max(r.MaxGroupSteers, n)
	}
	return r
}
