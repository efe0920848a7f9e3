package mobike

import (
	"fmt"
	"net/netip"
	"time"
)

// Observation is one entry of the core's typed decision trace: what it saw
// and decided, and why. Each Step appends observations to a buffer that the
// runloop drains with Controller.TakeTrace after the Step (so every
// observation belongs to the now of that Step). Metrics and logs are derived
// from the trace by adapters; scenario tests compare it with golden files.
// String renders one stable line.
type Observation interface {
	isObservation()
	String() string
}

// PathStateChanged: a pair changed state.
type PathStateChanged struct {
	Pair     Pair
	Uplink   string
	From, To PathState
	Reason   PathReason
}

// PairAdded: a new candidate pair (locally operational address × peer address).
type PairAdded struct {
	Pair   Pair
	Uplink string
}

// PairRemoved: a pair stopped being a candidate.
type PairRemoved struct {
	Pair   Pair
	Reason PathReason
}

// PeerLearned: a peer address became known for a connection from an SA or an
// ike-update (charon knew it, VICI's connection list did not).
type PeerLearned struct {
	Conn string
	Addr netip.Addr
}

// SAMoved: charon reports an SA on new endpoints (ike-update, SA list).
type SAMoved struct {
	Conn     string
	Group    string // its steering group (not rendered)
	ID       uint32
	From, To Pair
	Steered  bool // it is where the pending steer asked
}

// SAAdded and SARemoved: an IKE_SA appeared or went away.
type SAAdded struct {
	Conn      string
	ID        uint32
	Pair      Pair
	Initiator bool
}

type SARemoved struct {
	Conn string
	ID   uint32
}

// SteerRequested: the core asked for a steering group's SAs to move (the
// routing state now puts the group on To).
type SteerRequested struct {
	Group    string
	From, To Pair
	Forced   bool // the current pair is unusable (not blocked by the move budget)
	Cause    SteerCause
	Detail   string // for humans
}

// SteerConfirmed: charon reported every steerable SA of the group on the
// steered pair.
type SteerConfirmed struct {
	Group string
	Pair  Pair
	After time.Duration
}

// SteerFailed: a steer was not confirmed in time, could not be applied, or
// was abandoned. Backoff is the wait before the next attempt (0: none).
type SteerFailed struct {
	Group   string
	Pair    Pair
	Cause   FailCause
	Detail  string
	Backoff time.Duration
}

// HoldDownStarted: a better pair must stay stably operational until Until
// before the group moves to it.
type HoldDownStarted struct {
	Group string
	Pair  Pair
	Until time.Time
}

// PolicyConflict: a connection's steering group is on a pair its policy does
// not allow (chosen for Lead, the group's leading member), or, with an empty
// Detail, no longer is.
type PolicyConflict struct {
	Conn   string
	Group  string
	Pair   Pair
	Lead   string
	Detail string
}

// NATExcluded: a usable pair was excluded for a connection that forbids NAT.
type NATExcluded struct {
	Conn string
	Pair Pair
}

// MoveBudgetExhausted: a move was wanted but the group's move budget is
// spent; it stays until Until.
type MoveBudgetExhausted struct {
	Group string
	Want  Pair
	Until time.Time
}

// NoPath: a group's current pair is unusable and no eligible pair exists.
type NoPath struct {
	Group  string
	Reason AlertReason
}

// PreferChanged: an operator override was set (Uplink != "") or cleared.
type PreferChanged struct {
	Conn   string
	Uplink string
	Until  time.Time
}

// ConfirmRequested: before moving the group off From, the core asked for
// confirmation bursts on Pairs (the candidates of a forced move, or the
// target of a move away from a suspect pair).
type ConfirmRequested struct {
	Group  string
	From   Pair
	Pairs  []Pair
	Forced bool
	// Answer is the longest of the pairs' expected reply times (a forced
	// move passes a silent candidate over after its own), Verdict the
	// longest wait for the bursts' verdicts.
	Answer, Verdict time.Duration
}

// ConfigApplied: a new policy is in force.
type ConfigApplied struct{}

// CharonChanged: charon's VICI socket came up or went away.
type CharonChanged struct{ Up bool }

func (PathStateChanged) isObservation()    {}
func (PairAdded) isObservation()           {}
func (PairRemoved) isObservation()         {}
func (PeerLearned) isObservation()         {}
func (SAMoved) isObservation()             {}
func (SAAdded) isObservation()             {}
func (SARemoved) isObservation()           {}
func (SteerRequested) isObservation()      {}
func (SteerConfirmed) isObservation()      {}
func (SteerFailed) isObservation()         {}
func (HoldDownStarted) isObservation()     {}
func (PolicyConflict) isObservation()      {}
func (NATExcluded) isObservation()         {}
func (MoveBudgetExhausted) isObservation() {}
func (NoPath) isObservation()              {}
func (PreferChanged) isObservation()       {}
func (ConfirmRequested) isObservation()    {}
func (ConfigApplied) isObservation()       {}
func (CharonChanged) isObservation()       {}

func (o PathStateChanged) String() string {
	return fmt.Sprintf("path %s [%s] %s -> %s (%s)", o.Pair, o.Uplink, o.From, o.To, o.Reason)
}
func (o PairAdded) String() string { return fmt.Sprintf("pair-added %s [%s]", o.Pair, o.Uplink) }
func (o PairRemoved) String() string {
	return fmt.Sprintf("pair-removed %s (%s)", o.Pair, o.Reason)
}
func (o PeerLearned) String() string { return fmt.Sprintf("peer-learned %s %s", o.Conn, o.Addr) }
func (o SAMoved) String() string {
	by := "by charon"
	if o.Steered {
		by = "as steered"
	}
	return fmt.Sprintf("sa-moved %s#%d %s => %s (%s)", o.Conn, o.ID, o.From, o.To, by)
}
func (o SAAdded) String() string {
	role := "responder"
	if o.Initiator {
		role = "initiator"
	}
	return fmt.Sprintf("sa-added %s#%d %s %s", o.Conn, o.ID, o.Pair, role)
}
func (o SARemoved) String() string { return fmt.Sprintf("sa-removed %s#%d", o.Conn, o.ID) }
func (o SteerRequested) String() string {
	f := ""
	if o.Forced {
		f = " forced"
	}
	return fmt.Sprintf("steer-requested %s %s => %s%s %s (%s)", o.Group, o.From, o.To, f, o.Cause, o.Detail)
}
func (o SteerConfirmed) String() string {
	return fmt.Sprintf("steer-confirmed %s %s after %s", o.Group, o.Pair, o.After)
}
func (o SteerFailed) String() string {
	return fmt.Sprintf("steer-failed %s %s %s (%s) backoff %s", o.Group, o.Pair, o.Cause, o.Detail, o.Backoff)
}
func (o HoldDownStarted) String() string {
	return fmt.Sprintf("hold-down %s %s until %s", o.Group, o.Pair, o.Until.UTC().Format(time.RFC3339Nano))
}
func (o PolicyConflict) String() string {
	if o.Detail == "" {
		return fmt.Sprintf("policy-conflict-resolved %s in %s", o.Conn, o.Group)
	}
	return fmt.Sprintf("policy-conflict %s in %s: on %s chosen for %s, but %s", o.Conn, o.Group, o.Pair, o.Lead, o.Detail)
}
func (o NATExcluded) String() string { return fmt.Sprintf("nat-excluded %s %s", o.Conn, o.Pair) }
func (o MoveBudgetExhausted) String() string {
	return fmt.Sprintf("move-budget-exhausted %s want %s until %s", o.Group, o.Want, o.Until.UTC().Format(time.RFC3339Nano))
}
func (o NoPath) String() string { return fmt.Sprintf("no-path %s (%s)", o.Group, o.Reason) }
func (o PreferChanged) String() string {
	if o.Uplink == "" {
		return fmt.Sprintf("prefer-cleared %s", o.Conn)
	}
	return fmt.Sprintf("prefer %s %s until %s", o.Conn, o.Uplink, o.Until.UTC().Format(time.RFC3339Nano))
}
func (o ConfirmRequested) String() string {
	why := "target"
	if o.Forced {
		why = "forced"
	}
	return fmt.Sprintf("confirm-requested %s off %s (%s): %s (answers within %s, verdicts within %s)",
		o.Group, o.From, why, pairList(o.Pairs), o.Answer.Round(100*time.Microsecond), o.Verdict.Round(100*time.Microsecond))
}
func (ConfigApplied) String() string   { return "config-applied" }
func (o CharonChanged) String() string { return fmt.Sprintf("charon up=%t", o.Up) }
