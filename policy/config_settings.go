package policy

import (
	"math"
	"time"
)

// Settings converts the configuration into the ranking's and the core's input.
// The result keeps its own copy of c, so later changes to c do not leak into
// it. Uplink rules are matched per link through Settings.UplinkFor (name
// patterns and kinds cannot be listed ahead of the links).
func (c *Config) Settings() Settings {
	cc := c.Clone()
	s := Settings{
		UplinkFor: cc.UplinkFor,
		Default:   cc.Default.Policy(),
		Path:      PathPolicy{DownAfter: cc.Probes.LossThreshold},
	}
	s.Default.Name = ""
	for _, p := range cc.Conns {
		s.Conns = append(s.Conns, p.Policy())
	}
	return s
}

// Conns returns the ranking input of every listed connection.
func (c *Config) ConnPolicies() []ConnPolicy {
	var out []ConnPolicy
	for _, p := range c.Conns {
		out = append(out, p.Policy())
	}
	return out
}

// noRTTLimit stands for "no RTT limit" (ConnPolicy treats 0 as the default).
const noRTTLimit = time.Duration(math.MaxInt64)

// Policy converts a connection's configured values into a ConnPolicy, whose
// zero fields mean "default": the resolved zeros of ConnConfig are mapped to
// explicit equivalents (HoldDown 0 → NoHoldDown, SLA.MaxLoss 0 → the smallest
// positive ratio, SLA.MaxRTT 0 → no limit).
func (p ConnConfig) Policy() ConnPolicy {
	out := ConnPolicy{
		Name:           p.Name,
		AllowedUplinks: append([]string(nil), p.Uplinks...),
		ExtraPeers:     append(p.PeerAddrs[:0:0], p.PeerAddrs...),
		NAT:            p.NAT,
		SLA:            p.SLA,
		HoldDown:       p.HoldDown,
		MoveBudget:     p.MoveBudget.Moves,
		MoveWindow:     p.MoveBudget.Window,
		Method:         p.Probe,
	}
	if out.HoldDown == 0 {
		out.HoldDown = NoHoldDown
	}
	if out.SLA.MaxLoss == 0 {
		out.SLA.MaxLoss = math.SmallestNonzeroFloat64
	}
	if out.SLA.MaxRTT == 0 {
		out.SLA.MaxRTT = noRTTLimit
	}
	return out
}
