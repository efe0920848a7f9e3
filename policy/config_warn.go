package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Warnings returns what the configuration allows but probably does not
// mean, in file order. Today: policy conflicts it can see statically.
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
	v := validator{file: c.file, pos: c.pos}
	for j := 1; j < len(es); j++ {
		for i := 0; i < j; i++ {
			a, b := es[i], es[j]
			shared := sharedAddrs(a.p.PeerAddrs, b.p.PeerAddrs)
			if len(shared) == 0 {
				continue
			}
			lead := fmt.Sprintf("%s shares peer address %s with %s (one steering group, one pair, chosen for %s, listed first)",
				b.p.Name, shared[0], a.p.Name, a.p.Name)
			if len(a.p.Uplinks) > 0 && len(b.p.Uplinks) > 0 && !slices.ContainsFunc(a.p.Uplinks, func(u string) bool { return slices.Contains(b.p.Uplinks, u) }) {
				v.addf(b.field+".uplinks", "policy conflict: %s, but their uplinks [%s] and [%s] have none in common",
					lead, strings.Join(a.p.Uplinks, " "), strings.Join(b.p.Uplinks, " "))
			}
			if a.p.NAT != b.p.NAT {
				v.addf(b.field+".nat", "policy conflict: %s, but %s has nat %s and %s nat %s",
					lead, a.p.Name, a.p.NAT, b.p.Name, b.p.NAT)
			}
		}
	}
	sortProblems(v.problems)
	return v.problems
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
