package monitor

import (
	"fmt"
	"strings"

	"github.com/mobiked/mobiked/mobike"
)

// Format renders a NetState as text, one item a line, in the state's order:
//
//	link 2 eth0 ethernet up
//	addr 10.1.0.2/24 dev 2
//	addr fd00::2/64 dev 2 tentative
//	default via 10.1.0.1 dev 2 metric 100 table 254
//
// It is meant for logs, the operator CLI and test failures.
func Format(s mobike.NetState) string {
	var b strings.Builder
	for _, l := range s.Links {
		state := "down"
		if l.Up {
			state = "up"
		}
		fmt.Fprintf(&b, "link %d %s %s %s\n", l.Index, l.Name, l.Kind, state)
	}
	for _, a := range s.Addrs {
		fmt.Fprintf(&b, "addr %s dev %d%s\n", a.Prefix, a.LinkIdx, formatFlags(a.Flags))
	}
	for _, g := range s.Gateways {
		via := ""
		if g.Via.IsValid() {
			via = " via " + g.Via.String()
		}
		fmt.Fprintf(&b, "default%s dev %d metric %d table %d\n", via, g.LinkIdx, g.Metric, g.Table)
	}
	return b.String()
}

func formatFlags(f mobike.AddrFlags) string {
	var s string
	for _, x := range []struct {
		f    mobike.AddrFlags
		name string
	}{
		{mobike.AddrTentative, "tentative"},
		{mobike.AddrDADFailed, "dadfailed"},
		{mobike.AddrDeprecated, "deprecated"},
		{mobike.AddrTemporary, "temporary"},
	} {
		if f&x.f != 0 {
			s += " " + x.name
		}
	}
	return s
}
