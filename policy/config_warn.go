package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Warnings returns what the configuration allows but probably does not
// mean, in file order: policy conflicts it can see statically, and bounds
// of the adaptive probe timeout written next to a fixed timeout.
// Connections whose peer addresses overlap share one steering group with one
// pair (routes steer per destination address, not per SA; prohibit rules are
// host-wide), chosen for the one listed first; when their allowed uplinks
// have none in common, or one forbids NAT and the other does not, that pair
// breaks the policy of the other. The default entry stands for every
// connection not listed (it comes after the listed ones). Peer addresses
// that only charon knows (remote_addrs) are not seen here; the daemon
// reports those conflicts at runtime (alert policy-conflict).
func (c *Config) Warnings() []Problem {
	type entry struct {
		field string
		p     ConnConfig
	}
	var es []entry
	for i, p := range c.Conns {
		f := fmt.Sprintf("connections[%d]", i)
		if len(c.connFields) == len(c.Conns) {
			f = c.connFields[i]
		}
		es = append(es, entry{f, p})
	}
	def := "connections.default"
	if c.defaultField != "" {
		def = c.defaultField
	}
	dp := c.Default
	dp.Name = "(connections not listed)"
	es = append(es, entry{def, dp})
	v := validator{file: c.file, pos: c.pos, problems: &problemSet{}}
	// Only pairs that share a peer address can conflict: index the entries
	// by address, and format a warning only when it will be listed (a
	// config of thousands of connections sharing one gateway address has
	// millions of conflicting pairs; they are counted, not formatted).
	byAddr := map[netip.Addr][]int{} // entries by peer address, ascending
	for j, e := range es {
		b := es[j]
		var earlier []int // entries before j sharing an address, ascending, once
		for _, a := range e.p.PeerAddrs {
			earlier = mergeSorted(earlier, byAddr[a])
		}
		upField, natField := b.field+".uplinks", b.field+".nat"
		upLine, natLine := v.line(upField), v.line(natField)
		for _, i := range earlier {
			a := es[i]
			if len(a.p.Uplinks) > 0 && len(b.p.Uplinks) > 0 && !slices.ContainsFunc(a.p.Uplinks, func(u string) bool { return slices.Contains(b.p.Uplinks, u) }) {
				if !v.problems.wants(upLine) {
					v.problems.total++
				} else {
					v.addf(upField, "policy conflict: %s, but their uplinks [%s] and [%s] have none in common",
						conflictLead(a.p, b.p), strings.Join(a.p.Uplinks, " "), strings.Join(b.p.Uplinks, " "))
				}
			}
			if a.p.NAT != b.p.NAT {
				if !v.problems.wants(natLine) {
					v.problems.total++
				} else {
					v.addf(natField, "policy conflict: %s, but %s has nat %s and %s nat %s",
						conflictLead(a.p, b.p), a.p.Name, a.p.NAT, b.p.Name, b.p.NAT)
				}
			}
		}
		for _, a := range e.p.PeerAddrs {
			if l := byAddr[a]; len(l) == 0 || l[len(l)-1] != j {
				byAddr[a] = append(l, j)
			}
		}
	}
	if c.Probes.Timeout > 0 {
		for _, f := range []string{"probes.min_timeout", "probes.max_timeout"} {
			if _, written := c.pos[f]; written {
				v.addf(f, "ignored: probes.timeout %s is a fixed timeout; the bounds apply to the adaptive one", c.Probes.Timeout)
			}
		}
	}
	ws := v.problems.list // the first MaxProblems by line
	if more := v.problems.total - len(ws); more > 0 {
		ws = append(ws, Problem{File: c.file, Msg: fmt.Sprintf("and %d more warnings", more)})
	}
	return ws
}

// conflictLead names the steering group two connections share.
func conflictLead(a, b ConnConfig) string {
	return fmt.Sprintf("%s shares peer address %s with %s (one steering group, one pair, chosen for %s, listed first)",
		b.Name, sharedAddrs(a.PeerAddrs, b.PeerAddrs)[0], a.Name, a.Name)
}

// mergeSorted merges two ascending lists of distinct ints into one.
func mergeSorted(a, b []int) []int {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]int, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case b[0] < a[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func sharedAddrs(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
