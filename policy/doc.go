// Package policy answers "which path is best for this connection, and may we
// move now?". It is pure: standard library only (no net except net/netip, no
// os, no logging), so the core (package mobike) can call it from Step.
//
// The config half (config*.go) is the operator configuration: schema,
// defaults, strict YAML decoding and validation (Config, ConnPolicy,
// UplinkRule). The ranking half (types.go, rank*.go) orders a connection's
// candidate pairs: the core resolves each uplink to an UplinkPolicy
// (Config.UplinkFor) and each connection to its ConnPolicy (Config.Conn),
// builds one Candidate per pair and asks a Ranker, which returns every
// candidate with a reason (shown by `mobikectl explain`).
package policy
