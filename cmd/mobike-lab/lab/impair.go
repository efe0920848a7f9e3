package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ImpairKind is one kind of path impairment.
type ImpairKind uint8

const (
	Restore   ImpairKind = iota // remove every impairment of the path
	Blackhole                   // silently drop both directions, links stay up
	Loss                        // drop LossPct % of packets in each direction
	LinkDown                    // set the path's link down
	LinkUp                      // set it up again (and restore its routes)
	NATOn                       // masquerade the path's traffic towards the gateway
	NATOff
	DropIKE // drop UDP 500 and 4500 (IKE, ESP-in-UDP) both ways; ICMP and the rest pass
)

func (k ImpairKind) String() string {
	switch k {
	case Restore:
		return "restore"
	case Blackhole:
		return "blackhole"
	case Loss:
		return "loss"
	case LinkDown:
		return "link-down"
	case LinkUp:
		return "link-up"
	case NATOn:
		return "nat-on"
	case NATOff:
		return "nat-off"
	case DropIKE:
		return "drop-ike"
	}
	return fmt.Sprintf("impair(%d)", uint8(k))
}

// Impairment of one path.
type Impairment struct {
	Kind    ImpairKind `json:"kind"`
	LossPct float64    `json:"loss_pct,omitempty"` // each direction, 0.1 % steps
}

// Paths that can be impaired: mn's uplinks a and b, the gateway's addresses
// gw1 (10.3.0.2) and gw2 (10.4.0.2).
var Paths = []string{"a", "b", "gw1", "gw2"}

// pathIf is the router interface of a path and the node/interface whose link
// LinkDown switches.
var pathIf = map[string]struct{ rIf, node, nodeIf string }{
	"a":   {"eth0", "mn", "eth0"},
	"b":   {"eth1", "mn", "eth1"},
	"gw1": {"eth2", "gw", "eth0"},
	"gw2": {"eth3", "gw", "eth1"},
}

// Impair applies imp to path.
func (l *Lab) Impair(ctx context.Context, path string, imp Impairment) error {
	p, ok := pathIf[path]
	if !ok {
		return fmt.Errorf("lab: unknown path %q (want a, b, gw1 or gw2)", path)
	}
	switch imp.Kind {
	case LinkDown:
		_, err := l.nsRun(ctx, p.node, "ip", "link", "set", p.nodeIf, "down")
		return err
	case LinkUp:
		if _, err := l.nsRun(ctx, p.node, "ip", "link", "set", p.nodeIf, "up"); err != nil {
			return err
		}
		return l.restoreRoutes(ctx, path)
	case NATOn, NATOff:
		if path != "a" && path != "b" {
			return fmt.Errorf("lab: nat applies to mn's uplinks a and b, not %q", path)
		}
		if path == "b" {
			l.St.NATB = imp.Kind == NATOn
		} else {
			l.setMeta("nat_a", imp.Kind == NATOn)
		}
	case Loss:
		if imp.LossPct < 0 || imp.LossPct > 100 {
			return fmt.Errorf("lab: loss %g%% out of range 0-100", imp.LossPct)
		}
		l.St.Impair[path] = imp
	case Blackhole, DropIKE:
		l.St.Impair[path] = imp
	case Restore:
		delete(l.St.Impair, path)
		if err := l.clearDelay(ctx, path); err != nil {
			return err
		}
		if err := l.writeFirewall(ctx); err != nil {
			return err
		}
		if err := l.saveState(); err != nil {
			return err
		}
		// A restore also brings a downed link back.
		if _, err := l.nsRun(ctx, p.node, "ip", "link", "set", p.nodeIf, "up"); err != nil {
			return err
		}
		return l.restoreRoutes(ctx, path)
	default:
		return fmt.Errorf("lab: unknown impairment %d", imp.Kind)
	}
	if err := l.writeFirewall(ctx); err != nil {
		return err
	}
	return l.saveState()
}

func (l *Lab) setMeta(k string, v any) {
	if l.St.Meta == nil {
		l.St.Meta = map[string]any{}
	}
	l.St.Meta[k] = v
}

// restoreRoutes re-adds the routes the kernel flushed when a link went down.
func (l *Lab) restoreRoutes(ctx context.Context, path string) error {
	var cmds [][]string
	switch path {
	case "a":
		cmds = [][]string{{"ip", "route", "replace", "default", "via", "10.1.0.1", "dev", "eth0", "metric", "100"},
			{"ip", "-6", "route", "replace", "default", "via", "fd00:1::1", "dev", "eth0", "metric", "100"}}
	case "b":
		cmds = [][]string{{"ip", "route", "replace", "default", "via", "10.2.0.1", "dev", "eth1", "metric", "200"},
			{"ip", "-6", "route", "replace", "default", "via", "fd00:2::1", "dev", "eth1", "metric", "200"}}
	case "gw1":
		cmds = [][]string{{"ip", "route", "replace", "default", "via", "10.3.0.1", "dev", "eth0", "metric", "100"},
			{"ip", "route", "replace", "default", "via", "10.3.0.1", "dev", "eth0", "table", "101"},
			{"ip", "-6", "route", "replace", "default", "via", "fd00:3::1", "dev", "eth0", "metric", "100"},
			{"ip", "-6", "route", "replace", "default", "via", "fd00:3::1", "dev", "eth0", "table", "101"}}
	case "gw2":
		cmds = [][]string{{"ip", "route", "replace", "default", "via", "10.4.0.1", "dev", "eth1", "table", "102"},
			{"ip", "-6", "route", "replace", "default", "via", "fd00:4::1", "dev", "eth1", "table", "102"}}
	}
	node := pathIf[path].node
	for _, c := range cmds {
		if _, err := l.nsRun(ctx, node, c...); err != nil {
			return err
		}
	}
	return nil
}

// writeFirewall renders the router's whole nftables ruleset from the lab state
// and loads it atomically (the router namespace belongs to the lab alone).
func (l *Lab) writeFirewall(ctx context.Context) error {
	var b strings.Builder
	b.WriteString("flush ruleset\n")
	b.WriteString("table inet mlab {\n")
	var drops []string
	paths := make([]string, 0, len(l.St.Impair))
	for p := range l.St.Impair {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		imp := l.St.Impair[p]
		ifn := pathIf[p].rIf
		switch imp.Kind {
		case Blackhole:
			drops = append(drops, fmt.Sprintf("iifname %q drop", ifn), fmt.Sprintf("oifname %q drop", ifn))
		case DropIKE:
			for _, dir := range []string{"iifname", "oifname"} {
				for _, port := range []string{"dport", "sport"} {
					drops = append(drops, fmt.Sprintf("%s %q udp %s { 500, 4500 } drop", dir, ifn, port))
				}
			}
		case Loss:
			switch {
			case imp.LossPct <= 0:
				continue
			case imp.LossPct >= 100:
				drops = append(drops, fmt.Sprintf("iifname %q drop", ifn), fmt.Sprintf("oifname %q drop", ifn))
				continue
			}
			permille := int(imp.LossPct*10 + 0.5)
			drops = append(drops,
				fmt.Sprintf("iifname %q numgen random mod 1000 < %d drop", ifn, permille),
				fmt.Sprintf("oifname %q numgen random mod 1000 < %d drop", ifn, permille))
		}
	}
	for _, chain := range []string{"forward", "input", "output"} {
		fmt.Fprintf(&b, "  chain %s {\n    type filter hook %s priority 0; policy accept;\n", chain, chain)
		for _, d := range drops {
			// input only knows iif, output only oif
			if chain == "input" && strings.HasPrefix(d, "oifname") || chain == "output" && strings.HasPrefix(d, "iifname") {
				continue
			}
			fmt.Fprintf(&b, "    %s\n", d)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n")
	natA, _ := l.St.Meta["nat_a"].(bool)
	for _, n := range []struct {
		on   bool
		src  string
		src6 string
	}{{natA, "10.1.0.0/24", "fd00:1::/64"}, {l.St.NATB, "10.2.0.0/24", "fd00:2::/64"}} {
		if !n.on {
			continue
		}
		fmt.Fprintf(&b, "    ip saddr %s oifname { \"eth2\", \"eth3\" } masquerade\n", n.src)
		fmt.Fprintf(&b, "    ip6 saddr %s oifname { \"eth2\", \"eth3\" } masquerade\n", n.src6)
	}
	b.WriteString("  }\n}\n")
	f := filepath.Join(l.Dir, "r.nft")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if _, err := l.nsRun(ctx, "r", "nft", "-f", f); err != nil {
		return fmt.Errorf("lab: firewall: %w", err)
	}
	// Note: conntrack keeps existing NAT bindings (and non-bindings) of
	// established UDP flows until they time out; NAT on/off applies to new flows.
	return nil
}
