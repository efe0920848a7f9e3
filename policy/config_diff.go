package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ChangeKind names what a reload changed.
type ChangeKind uint8

const (
	UplinkAdded          ChangeKind = iota // a rule was added (Name is its ID)
	UplinkRemoved                          // a rule was removed
	UplinkChanged                          // a rule's settings changed (Fields lists which)
	UplinksReordered                       // same rules, new order (first match wins)
	ConnAdded                              // a connection entry was added (Name)
	ConnRemoved                            // a connection entry was removed: it falls back to the default
	ConnChanged                            // a connection's settings changed
	DefaultChanged                         // the default connection policy changed: every unlisted connection
	ProbesChanged                          // probe pacing, timeout or loss threshold
	SteeringChanged                        // routing table or rule priorities: needs a restart
	ReflectorChanged                       // reflector listen address or key
	MetricsListenChanged                   // metrics listener: needs a restart
	ControlSocketChanged                   // control socket path: needs a restart
	HooksChanged                           // hook programs or their timeout
)

var changeKindNames = [...]string{
	UplinkAdded:          "uplink-added",
	UplinkRemoved:        "uplink-removed",
	UplinkChanged:        "uplink-changed",
	UplinksReordered:     "uplinks-reordered",
	ConnAdded:            "conn-added",
	ConnRemoved:          "conn-removed",
	ConnChanged:          "conn-changed",
	DefaultChanged:       "default-changed",
	ProbesChanged:        "probes-changed",
	SteeringChanged:      "steering-changed",
	ReflectorChanged:     "reflector-changed",
	MetricsListenChanged: "metrics-listen-changed",
	ControlSocketChanged: "control-socket-changed",
	HooksChanged:         "hooks-changed",
}

func (k ChangeKind) String() string {
	if int(k) < len(changeKindNames) {
		return changeKindNames[k]
	}
	return "change(" + strconv.Itoa(int(k)) + ")"
}

// NeedsRestart reports whether a change cannot be applied to a running
// daemon: the reload keeps the old value and says so.
func (k ChangeKind) NeedsRestart() bool {
	switch k {
	case SteeringChanged, MetricsListenChanged, ControlSocketChanged:
		return true
	}
	return false
}

// Change is one difference between two configurations.
type Change struct {
	Kind   ChangeKind
	Name   string   // uplink rule ID or connection name, when the change is about one
	Fields []string // changed fields, by their YAML names
}

func (c Change) String() string {
	s := c.Kind.String()
	if c.Name != "" {
		s += " " + c.Name
	}
	if len(c.Fields) > 0 {
		s += ": " + strings.Join(c.Fields, ", ")
	}
	return s
}

// Diff returns what changed from old to new, in a stable order: uplinks,
// the default, connections (added, removed, changed, by name), then the
// global sections. Equal configurations give no changes.
func Diff(old, new *Config) []Change {
	var out []Change

	oldUp := map[string]UplinkRule{}
	var oldIDs, newIDs []string
	for _, u := range old.Uplinks {
		oldUp[u.ID()] = u
		oldIDs = append(oldIDs, u.ID())
	}
	newUp := map[string]bool{}
	for _, u := range new.Uplinks {
		newUp[u.ID()] = true
		newIDs = append(newIDs, u.ID())
		o, ok := oldUp[u.ID()]
		if !ok {
			out = append(out, Change{Kind: UplinkAdded, Name: u.ID()})
			continue
		}
		if f := uplinkFields(o, u); len(f) > 0 {
			out = append(out, Change{Kind: UplinkChanged, Name: u.ID(), Fields: f})
		}
	}
	for _, u := range old.Uplinks {
		if !newUp[u.ID()] {
			out = append(out, Change{Kind: UplinkRemoved, Name: u.ID()})
		}
	}
	if common := commonOrder(oldIDs, newUp); !slices.Equal(common, commonOrder(newIDs, toSet(oldIDs))) {
		out = append(out, Change{Kind: UplinksReordered})
	}

	if f := connFields(old.Default, new.Default); len(f) > 0 {
		out = append(out, Change{Kind: DefaultChanged, Fields: f})
	}
	oldConn := map[string]ConnConfig{}
	for _, p := range old.Conns {
		oldConn[p.Name] = p
	}
	newConn := map[string]bool{}
	for _, p := range new.Conns {
		newConn[p.Name] = true
		o, ok := oldConn[p.Name]
		if !ok {
			out = append(out, Change{Kind: ConnAdded, Name: p.Name})
			continue
		}
		if f := connFields(o, p); len(f) > 0 {
			out = append(out, Change{Kind: ConnChanged, Name: p.Name, Fields: f})
		}
	}
	for _, p := range old.Conns {
		if !newConn[p.Name] {
			out = append(out, Change{Kind: ConnRemoved, Name: p.Name})
		}
	}

	var f fields
	f.cmp(old.Probes.ActiveInterval != new.Probes.ActiveInterval, "active_interval")
	f.cmp(old.Probes.StandbyInterval != new.Probes.StandbyInterval, "standby_interval")
	f.cmp(old.Probes.MeteredStandbyInterval != new.Probes.MeteredStandbyInterval, "metered_standby_interval")
	f.cmp(old.Probes.Timeout != new.Probes.Timeout, "timeout")
	f.cmp(old.Probes.MinTimeout != new.Probes.MinTimeout, "min_timeout")
	f.cmp(old.Probes.MaxTimeout != new.Probes.MaxTimeout, "max_timeout")
	f.cmp(old.Probes.LossThreshold != new.Probes.LossThreshold, "loss_threshold")
	out = f.add(out, ProbesChanged)

	f = nil
	f.cmp(old.Steering.Table != new.Steering.Table, "table")
	f.cmp(old.Steering.RulePriorityMin != new.Steering.RulePriorityMin, "rule_priority.min")
	f.cmp(old.Steering.RulePriorityMax != new.Steering.RulePriorityMax, "rule_priority.max")
	out = f.add(out, SteeringChanged)

	f = nil
	f.cmp(old.Reflector.Listen != new.Reflector.Listen, "listen")
	f.cmp(old.Reflector.Key != new.Reflector.Key, "key")
	out = f.add(out, ReflectorChanged)

	if old.MetricsListen != new.MetricsListen {
		out = append(out, Change{Kind: MetricsListenChanged, Fields: []string{"listen"}})
	}
	if old.ControlSocket != new.ControlSocket {
		out = append(out, Change{Kind: ControlSocketChanged, Fields: []string{"socket"}})
	}
	f = nil
	f.cmp(old.Hooks.OnMove != new.Hooks.OnMove, "on_move")
	f.cmp(old.Hooks.Timeout != new.Hooks.Timeout, "timeout")
	out = f.add(out, HooksChanged)
	return out
}

func toSet(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// commonOrder returns the ids that are also in other, in order.
func commonOrder(ids []string, other map[string]bool) []string {
	var out []string
	for _, id := range ids {
		if other[id] {
			out = append(out, id)
		}
	}
	return out
}

// fields collects the names of changed fields.
type fields []string

func (f *fields) cmp(changed bool, name string) {
	if changed {
		*f = append(*f, name)
	}
}

func (f fields) add(out []Change, k ChangeKind) []Change {
	if len(f) == 0 {
		return out
	}
	return append(out, Change{Kind: k, Fields: f})
}

func uplinkFields(a, b UplinkRule) []string {
	var f fields
	f.cmp(a.Name != b.Name, "name")
	f.cmp(a.Kind != b.Kind, "kind")
	f.cmp(a.Priority != b.Priority, "priority")
	f.cmp(a.Cost != b.Cost, "cost")
	f.cmp(fmt.Sprint(derefBool(a.Metered)) != fmt.Sprint(derefBool(b.Metered)), "metered")
	f.cmp(a.ProbeProfile != b.ProbeProfile, "probe_profile")
	f.cmp(a.Exclude != b.Exclude, "exclude")
	return f
}

// derefBool renders a tri-state bool: nil, true or false.
func derefBool(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func connFields(a, b ConnConfig) []string {
	var f fields
	f.cmp(!slices.Equal(a.Uplinks, b.Uplinks), "uplinks")
	f.cmp(!slices.Equal(a.PeerAddrs, b.PeerAddrs), "peer_addresses")
	f.cmp(a.NAT != b.NAT, "nat")
	f.cmp(a.SLA.MaxLoss != b.SLA.MaxLoss, "sla.max_loss")
	f.cmp(a.SLA.MaxRTT != b.SLA.MaxRTT, "sla.max_rtt")
	f.cmp(a.HoldDown != b.HoldDown, "hold_down")
	f.cmp(a.MoveBudget.Moves != b.MoveBudget.Moves, "move_budget.moves")
	f.cmp(a.MoveBudget.Window != b.MoveBudget.Window, "move_budget.window")
	f.cmp(a.Probe != b.Probe, "probe")
	return f
}
