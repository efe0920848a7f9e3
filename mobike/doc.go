// Package mobike is the sans-IO core of mobiked: it decides which path
// (local×remote address pair) each IKE SA should use.
//
// It owns the RFC 4621 §2 address terms (available address, locally
// operational address, operational pair), the peer address sets, the candidate
// pairs and their path state, and the decision rules: only the original
// initiator steers, never move to an untested pair, leave a dead pair at once,
// return to a better pair only after hold-down, never move onto a NATed pair
// when the connection forbids NAT, and a bounded move budget.
//
// The core never opens a socket, reads the clock, starts a goroutine or logs:
// adapters feed it Events through Controller.Step(now, ev) and execute the
// Actions it returns. Subpackage wire is the IKEv2/MOBIKE codec, sim a
// deterministic simulated world for scenario tests.
package mobike

// Using the Controller (the daemon's runloop):
//
//	c := mobike.New(mobike.Config{Policy: settings}) // zero Policy = zero-config
//	for {
//		// wait for an adapter event, or until c.NextDeadline() (zero = none)
//		acts := c.Step(now, ev)  // ev = mobike.EvTimer{} when the deadline fired
//		for _, o := range c.TakeTrace() { /* log, metrics */ }
//		for _, a := range acts { /* ActProbeStart/Stop, ActRouting (the steerer feeds back EvRoutingApplied), ActAlert */ }
//	}
//
// Runtime changes: EvConfig{Policy} (reload), EvPrefer{Conn, Uplink, Until}
// (operator override; empty Uplink clears). Snapshot() returns the state with
// per-connection rankings and reasons for `mobikectl explain`.
//
// Steering: connections whose peer address sets overlap form a steering
// group with exactly one pair (group.go). From every group's pair the core
// computes one desired routing state for the whole host (Desired: uplink
// tables and source rules, per group a host route, a peer rule and prohibit
// rules) and emits it as ActRouting whenever it changes; the steerer makes
// the kernel equal to it, off the core's goroutine, and reports back with
// EvRoutingApplied. Causes and reasons are enums (causes.go).
