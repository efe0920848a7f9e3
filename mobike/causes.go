package mobike

// Typed causes and reasons. Code, metrics and alerts switch on these enums;
// the human detail travels separately (SteerRequested.Detail, ...). Every
// value is produced by the core somewhere (TestEveryCauseOccurs in mobike/sim
// drives a scenario for each), so metric label sets built from these lists
// never hold a value that cannot occur.

// SteerCause says why the core moves a steering group to another pair.
type SteerCause uint8

const (
	SteerNone SteerCause = iota
	// SteerPathDown: the current pair is down or gone (probe verdict, link
	// down, address gone). A forced move.
	SteerPathDown
	// SteerNotAllowed: the current pair is no longer allowed for any member
	// (uplink not allowed or excluded after a reload, a NAT appeared on a
	// connection that forbids NAT). A forced move.
	SteerNotAllowed
	// SteerBetterPath: a better-ranked pair has been stable for the
	// hold-down (failback included).
	SteerBetterPath
	// SteerSLABreach: the current pair misses the leading connection's SLA
	// and the new one meets it.
	SteerSLABreach
	// SteerManual: an operator override (mobikectl prefer).
	SteerManual
	// SteerRegroup: SAs of the group are on different pairs (a connection
	// came up elsewhere, charon moved one on its own): all follow the group's
	// pair.
	SteerRegroup
)

var steerCauseNames = [...]string{
	SteerNone:       "none",
	SteerPathDown:   "path-down",
	SteerNotAllowed: "not-allowed",
	SteerBetterPath: "better-path",
	SteerSLABreach:  "sla-breach",
	SteerManual:     "manual",
	SteerRegroup:    "regroup",
}

func (c SteerCause) String() string {
	if int(c) < len(steerCauseNames) {
		return steerCauseNames[c]
	}
	return "steer-cause(" + itoa(int(c)) + ")"
}

// Forced reports whether a steer of this cause leaves a pair that cannot be
// kept: no hold-down, the move budget does not block it.
func (c SteerCause) Forced() bool { return c == SteerPathDown || c == SteerNotAllowed }

// SteerCauses lists every cause a steer can have (SteerNone excluded).
func SteerCauses() []SteerCause {
	out := make([]SteerCause, 0, len(steerCauseNames)-1)
	for c := SteerPathDown; int(c) < len(steerCauseNames); c++ {
		out = append(out, c)
	}
	return out
}

// FailCause says why a steer ended without confirmation.
type FailCause uint8

const (
	FailNone FailCause = iota
	// FailUnconfirmed: no ike-update put the SAs on the pair in time.
	FailUnconfirmed
	// FailKernel: the routing state could not be installed.
	FailKernel
	// FailCharonDown: charon's VICI socket went away during the steer.
	FailCharonDown
	// FailWrongPath: charon moved an SA to another known pair instead.
	FailWrongPath
	// FailUnknownPeer: charon moved an SA to a peer address unknown when the
	// steer was made; it is learned and the group is steered again at once.
	FailUnknownPeer
	// FailTargetUnusable: the target pair stopped being usable during the
	// steer.
	FailTargetUnusable
	// FailSAGone: the group has no steerable SA any more.
	FailSAGone
)

var failCauseNames = [...]string{
	FailNone:           "none",
	FailUnconfirmed:    "unconfirmed",
	FailKernel:         "kernel-error",
	FailCharonDown:     "vici-down",
	FailWrongPath:      "wrong-path",
	FailUnknownPeer:    "unknown-peer",
	FailTargetUnusable: "target-unusable",
	FailSAGone:         "sa-gone",
}

func (c FailCause) String() string {
	if int(c) < len(failCauseNames) {
		return failCauseNames[c]
	}
	return "fail-cause(" + itoa(int(c)) + ")"
}

// BacksOff reports whether a failure of this cause delays the next steer
// (a real failure) or not (the steer was abandoned because it no longer
// made sense).
func (c FailCause) BacksOff() bool {
	return c == FailUnconfirmed || c == FailKernel || c == FailWrongPath
}

// FailCauses lists every failure cause (FailNone excluded).
func FailCauses() []FailCause {
	out := make([]FailCause, 0, len(failCauseNames)-1)
	for c := FailUnconfirmed; int(c) < len(failCauseNames); c++ {
		out = append(out, c)
	}
	return out
}

// AlertReason is why the core tells the operator something (ActAlert).
type AlertReason uint8

const (
	AlertNone AlertReason = iota
	// AlertNoPath: the current pair is unusable and no other pair is.
	AlertNoPath
	// AlertNATForbidden: only NATed pairs are usable for a connection that
	// forbids NAT.
	AlertNATForbidden
	// AlertSteerUnconfirmed: charon did not move the SAs (settings?).
	AlertSteerUnconfirmed
	// AlertSteerApply: the routing state could not be installed.
	AlertSteerApply
	// AlertSteerDiverted: charon moved to another pair than steered.
	AlertSteerDiverted
	// AlertMoveBudget: a wanted move is blocked by the move budget.
	AlertMoveBudget
	// AlertPolicyConflict: a connection shares its steering group's pair
	// although its policy does not allow that pair.
	AlertPolicyConflict
)

var alertReasonNames = [...]string{
	AlertNone:             "none",
	AlertNoPath:           "no-path",
	AlertNATForbidden:     "nat-forbidden",
	AlertSteerUnconfirmed: "steer-unconfirmed",
	AlertSteerApply:       "steer-apply-failed",
	AlertSteerDiverted:    "steer-diverted",
	AlertMoveBudget:       "move-budget-exhausted",
	AlertPolicyConflict:   "policy-conflict",
}

func (r AlertReason) String() string {
	if int(r) < len(alertReasonNames) {
		return alertReasonNames[r]
	}
	return "alert-reason(" + itoa(int(r)) + ")"
}

// AlertReasons lists every alert reason (AlertNone excluded).
func AlertReasons() []AlertReason {
	out := make([]AlertReason, 0, len(alertReasonNames)-1)
	for r := AlertNoPath; int(r) < len(alertReasonNames); r++ {
		out = append(out, r)
	}
	return out
}
