package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mobiked/mobiked/cmd/internal/buildinfo"
	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/deploy"
	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/policy"
	"github.com/mobiked/mobiked/vici/steer"
)

// CharonSnippetPath is where the docs tell users to install
// deploy/strongswan.d/mobiked.conf.
const CharonSnippetPath = deploy.CharonConfPath

// charonSetting is one setting mobiked needs from charon.
type charonSetting struct {
	key string            // below the daemon's namespace (charon or charon-systemd)
	ok  func(string) bool // whether a value is what mobiked needs
	why string            // shown when missing
	// unsetOK: charon's default is what mobiked needs; only a value
	// written otherwise is reported.
	unsetOK bool
}

var charonSettings = []charonSetting{
	{"prefer_best_path", swTrue, "charon keeps a working path although mobiked's routes prefer another", false},
	{"plugins.kernel-netlink.fwmark", func(v string) bool { return strings.HasPrefix(v, "!") }, "charon's lookups skip mobiked's rules (and it cannot be moved to another peer address)", false},
	{"plugins.kernel-netlink.process_rules", swTrue, "rule changes do not make charon re-check its path", false},
	{"process_route", swNotFalse, "route changes (mobiked's host routes, its arm of charon's roam evaluation) do not make charon re-check its path", true},
	{"plugins.kernel-netlink.roam_events", swNotFalse, "charon ignores every routing change: it never follows mobiked", true},
}

// swNotFalse accepts any value but a false one (for settings whose default
// is yes).
func swNotFalse(v string) bool {
	switch strings.ToLower(v) {
	case "0", "no", "false", "disabled":
		return false
	}
	return true
}

// charonSettingsMissing names the settings mobiked needs that c does not set
// right. charon-systemd reads its own namespace first and falls back to
// charon (library_add_namespace), so either satisfies a key.
func charonSettingsMissing(c *swConf) []string {
	var missing []string
	for _, s := range charonSettings {
		v, ok := c.get("charon-systemd." + s.key)
		if !ok {
			v, ok = c.get("charon." + s.key)
		}
		if (!ok && !s.unsetOK) || (ok && !s.ok(v)) {
			missing = append(missing, "charon."+s.key)
		}
	}
	return missing
}

// rootFS reads absolute paths through fs.FS (paths without the leading "/").
var rootFS fs.FS = os.DirFS("/")

func relRoot(p string) string { return strings.TrimPrefix(p, "/") }

// doctor runs the self-checks of `mobikectl doctor` from inside mobiked.
func (d *daemon) doctor(ctx context.Context) control.Doctor {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var checks []control.Check
	add := func(name string, st control.CheckStatus, hint, format string, a ...any) {
		checks = append(checks, control.Check{Name: name, Status: st, Detail: fmt.Sprintf(format, a...), Hint: hint})
	}

	var st mobike.State
	var configPath string
	var band steerBand
	if err := d.loop.Do(ctx, func() {
		st = d.core.Snapshot()
		configPath = d.configPath
		band = steerBandOf(d.cfg)
	}); err != nil {
		add("mobiked", control.CheckFail, "", "decision loop does not answer: %v", err)
		return control.Doctor{At: time.Now(), Checks: checks}
	}
	add("mobiked", control.CheckOK, "", "%s, config %s", buildinfo.Read().String(), configName(configPath))

	// charon over VICI.
	ver, verr := d.charon.Version(ctx)
	if verr != nil {
		add("vici", control.CheckFail, "is charon running (strongswan-starter.service or strongswan.service) with the vici plugin? mobiked --vici-socket names the socket",
			"charon not reachable at %s: %v", d.f.viciSocket, verr)
	} else {
		add("vici", control.CheckOK, "", "charon %s at %s", ver, d.f.viciSocket)
	}

	checks = append(checks, d.checkSettings()...)
	checks = append(checks, checkFwmarkRule())
	checks = append(checks, d.checkConns(ctx, st, verr == nil)...)
	checks = append(checks, checkForeign(band)...)
	checks = append(checks, checkUplinks(st))
	checks = append(checks, checkPaths(st)...)
	return control.Doctor{At: time.Now(), Checks: checks}
}

// checkSettings reads charon's strongswan.conf as charon does and names each
// setting of deploy/strongswan.d/mobiked.conf that is missing.
func (d *daemon) checkSettings() []control.Check {
	hint := "install deploy/strongswan.d/mobiked.conf as " + CharonSnippetPath + " (not in strongswan.d/charon/) and restart charon"
	c, err := loadSwConf(rootFS, relRoot(d.f.strongswanCfg))
	if err != nil {
		return []control.Check{{Name: "charon-settings", Status: control.CheckWarn, Hint: hint,
			Detail: fmt.Sprintf("cannot read %s (%v): only the kernel rule below tells whether charon has mobiked's settings", d.f.strongswanCfg, err)}}
	}
	missing := charonSettingsMissing(c)
	if len(missing) == 0 {
		return []control.Check{{Name: "charon-settings", Status: control.CheckOK,
			Detail: fmt.Sprintf("prefer_best_path, kernel-netlink fwmark = !MARK and process_rules set (%s and %d included files)", d.f.strongswanCfg, len(c.files)-1)}}
	}
	var out []control.Check
	for _, m := range missing {
		why := ""
		for _, s := range charonSettings {
			if "charon."+s.key == m {
				why = s.why
			}
		}
		v, ok := c.get(m)
		state := "not set"
		if ok {
			state = fmt.Sprintf("set to %q", v)
		}
		out = append(out, control.Check{Name: "charon-settings", Status: control.CheckFail, Hint: hint,
			Detail: fmt.Sprintf("%s is %s in %s: %s", m, state, d.f.strongswanCfg, why)})
	}
	return out
}

// checkFwmarkRule looks for charon's inverted-fwmark rule, the kernel's
// evidence that the running charon has fwmark = !MARK.
func checkFwmarkRule() control.Check {
	const name = "charon-fwmark-rule"
	hint := "charon needs kernel-netlink fwmark = !0x42 (" + CharonSnippetPath + "); restart charon after installing it"
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return control.Check{Name: name, Status: control.CheckWarn, Detail: fmt.Sprintf("cannot list rules: %v", err)}
	}
	plain := false
	for _, r := range rules {
		if r.Table != 220 {
			continue
		}
		if r.Invert && r.Mark != 0 {
			return control.Check{Name: name, Status: control.CheckOK, Detail: fmt.Sprintf("rule %d: not fwmark %#x lookup 220", r.Priority, r.Mark)}
		}
		plain = true
	}
	if plain {
		return control.Check{Name: name, Status: control.CheckFail, Hint: hint,
			Detail: "charon's rule is `lookup 220` without `not fwmark 0x42`: charon runs without mobiked's settings"}
	}
	return control.Check{Name: name, Status: control.CheckWarn, Hint: hint,
		Detail: "no rule `not fwmark 0x42 lookup 220` (charon down, or install_routes = no)"}
}

// checkConns says, per connection, whether mobiked can steer it and why not.
func (d *daemon) checkConns(ctx context.Context, st mobike.State, charonUp bool) []control.Check {
	var conns []mobike.Conn
	if charonUp {
		var err error
		if conns, err = d.charon.ListConns(ctx); err != nil {
			return []control.Check{{Name: "connections", Status: control.CheckWarn, Detail: fmt.Sprintf("list-conns: %v", err)}}
		}
	}
	swanctl, swErr := loadSwConf(rootFS, relRoot(d.f.swanctlCfg))
	sasOf := map[string][]mobike.SAView{}
	for _, sa := range st.SAs {
		sasOf[sa.Conn] = append(sasOf[sa.Conn], sa)
	}
	names := map[string]bool{}
	for _, c := range conns {
		names[c.Name] = true
	}
	for n := range sasOf {
		names[n] = true
	}
	if len(names) == 0 {
		return []control.Check{{Name: "connections", Status: control.CheckWarn, Detail: "charon has no connections loaded",
			Hint: "load them with swanctl --load-all"}}
	}
	local := map[string][]string{}
	for _, c := range conns {
		local[c.Name] = c.LocalAddrs
	}
	var out []control.Check
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}) {
		name := "conn " + n
		var why []string
		status := control.CheckOK
		if swErr == nil {
			if v, ok := swanctl.get("connections." + n + ".mobike"); ok && !swTrue(v) {
				status = control.CheckFail
				why = append(why, "mobike = no in "+d.f.swanctlCfg+": charon cannot move its SAs")
			}
		}
		var pinned []string
		for _, a := range local[n] {
			if _, err := netip.ParseAddr(a); err == nil {
				pinned = append(pinned, a)
			}
		}
		if len(pinned) > 0 {
			if status == control.CheckOK {
				status = control.CheckWarn
			}
			why = append(why, "local_addrs pins "+strings.Join(pinned, ", ")+": charon only uses those local addresses")
		}
		sas := sasOf[n]
		ini, resp := 0, 0
		for _, sa := range sas {
			if sa.Initiator {
				ini++
			} else {
				resp++
			}
		}
		switch {
		case len(sas) == 0:
			if status == control.CheckOK {
				status = control.CheckWarn
			}
			why = append(why, "no IKE_SA up: nothing to steer yet")
		case ini == 0:
			if status == control.CheckOK {
				status = control.CheckWarn
			}
			why = append(why, fmt.Sprintf("%d SA(s), all as responder: monitored, never steered (only the original initiator can move an SA)", resp))
		}
		detail := ""
		if status == control.CheckOK {
			detail = fmt.Sprintf("steerable: %d SA(s) as initiator", ini)
			if resp > 0 {
				detail += fmt.Sprintf(", %d as responder (not steered)", resp)
			}
			if swErr != nil {
				detail += "; mobike setting not checked (" + d.f.swanctlCfg + " unreadable)"
			}
		} else {
			detail = strings.Join(why, "; ")
		}
		hint := ""
		if status != control.CheckOK {
			hint = "steerable connections: mobike = yes (default), this host initiates, local_addrs = %any (default)"
		}
		out = append(out, control.Check{Name: name, Status: status, Detail: detail, Hint: hint})
	}
	return out
}

// steerBand is the kernel state mobiked owns: rule priorities and tables.
type steerBand struct {
	prioMin, prioMax int
	tables           []int
}

func steerBandOf(cfg *policy.Config) steerBand {
	o := steerOptions(cfg, slog.New(slog.DiscardHandler))
	b := steerBand{prioMin: o.MainPrio, prioMax: o.PrioMax, tables: []int{o.Table}}
	if b.prioMin == 0 {
		b.prioMin = steer.DefaultMainPrio
	}
	if b.prioMax == 0 {
		b.prioMax = steer.DefaultPrioMax
	}
	if b.tables[0] == 0 {
		b.tables[0] = steer.DefaultTable
	}
	for i := range o.UplinkTables {
		b.tables = append(b.tables, o.UplinkTableBase+i)
	}
	return b
}

// tablesString renders the tables with runs folded: "2100–2164".
func (b steerBand) tablesString() string {
	t := slices.Sorted(slices.Values(b.tables))
	var parts []string
	for i := 0; i < len(t); {
		j := i
		for j+1 < len(t) && t[j+1] == t[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d–%d", t[i], t[j]))
		} else {
			parts = append(parts, fmt.Sprint(t[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// checkForeign finds rules in mobiked's priority band and routes in its
// tables that mobiked did not install (another protocol): they would fight
// mobiked's steering.
func checkForeign(b steerBand) []control.Check {
	const name = "foreign-entries"
	hint := fmt.Sprintf("move them out of priorities %d–%d and tables %s, or move mobiked's (steering: in mobiked.yaml)", b.prioMin, b.prioMax, b.tablesString())
	rules, err := netlink.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return []control.Check{{Name: name, Status: control.CheckWarn, Detail: fmt.Sprintf("cannot list rules: %v", err)}}
	}
	var found []string
	for _, r := range rules {
		if r.Priority >= b.prioMin && r.Priority <= b.prioMax && r.Protocol != steer.DefaultProtocol {
			found = append(found, fmt.Sprintf("rule pref %d (%s)", r.Priority, r.String()))
		}
	}
	// One dump of every table (Table 0 = RT_TABLE_UNSPEC), filtered here.
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return []control.Check{{Name: name, Status: control.CheckWarn, Detail: fmt.Sprintf("cannot list routes: %v", err)}}
	}
	for _, r := range routes {
		if slices.Contains(b.tables, r.Table) && r.Protocol != netlink.RouteProtocol(steer.DefaultProtocol) {
			found = append(found, fmt.Sprintf("route %s in table %d", r.String(), r.Table))
		}
	}
	if len(found) > 0 {
		return []control.Check{{Name: name, Status: control.CheckFail, Hint: hint, Detail: strings.Join(found, "; ")}}
	}
	return []control.Check{{Name: name, Status: control.CheckOK,
		Detail: fmt.Sprintf("no foreign rules in priorities %d–%d, no foreign routes in tables %s", b.prioMin, b.prioMax, b.tablesString())}}
}

// checkUplinks lists the links mobiked uses.
func checkUplinks(st mobike.State) control.Check {
	var up []string
	for _, u := range st.Uplinks {
		if !u.Up || u.Policy.Exclude {
			continue
		}
		n := 0
		for _, a := range u.Addrs {
			if a.Available {
				n++
			}
		}
		if n == 0 {
			continue
		}
		gw := "no default route"
		if len(u.Gateway) > 0 {
			var s []string
			for _, g := range u.Gateway {
				s = append(s, g.String())
			}
			gw = "via " + strings.Join(s, ", ")
		}
		up = append(up, fmt.Sprintf("%s (%d addresses, %s)", u.Name, n, gw))
	}
	if len(up) == 0 {
		return control.Check{Name: "uplinks", Status: control.CheckFail, Detail: "no link is up with a usable address",
			Hint: "mobiked needs at least one uplink; see uplinks: in mobiked.yaml (exclude)"}
	}
	st1 := control.CheckOK
	if len(up) == 1 {
		st1 = control.CheckWarn
	}
	return control.Check{Name: "uplinks", Status: st1, Detail: strings.Join(up, "; ")}
}

// checkPaths reports, per connection and peer address, the probe verdict of
// each uplink's pair.
func checkPaths(st mobike.State) []control.Check {
	byPeer := map[netip.Addr][]mobike.PairView{}
	for _, p := range st.Pairs {
		byPeer[p.Pair.Remote] = append(byPeer[p.Pair.Remote], p)
	}
	var out []control.Check
	for _, c := range st.Conns {
		if len(c.Peers) == 0 {
			continue
		}
		var parts []string
		usable, known := 0, 0
		for _, peer := range c.Peers {
			ps := byPeer[peer]
			slices.SortFunc(ps, func(a, b mobike.PairView) int { return strings.Compare(a.Uplink, b.Uplink) })
			var per []string
			for _, p := range ps {
				known++
				s := p.State.String()
				if p.State.Usable() {
					usable++
					if p.Stats.SRTT > 0 {
						s += fmt.Sprintf(" %.1fms", float64(p.Stats.SRTT)/float64(time.Millisecond))
					}
				}
				per = append(per, p.Uplink+" "+s)
			}
			if len(per) == 0 {
				per = append(per, "not probed")
			}
			parts = append(parts, peer.String()+": "+strings.Join(per, ", "))
		}
		status := control.CheckOK
		hint := ""
		switch {
		case known == 0:
			status = control.CheckWarn
			hint = "no pair is probed yet (no SA, or no uplink of the peer's family)"
		case usable == 0:
			status = control.CheckFail
			hint = "no path to any peer address answers probes: firewalls must let ICMP echo (probe: icmp) or UDP 862 (probe: stamp) through"
		case usable < known:
			status = control.CheckWarn
		}
		out = append(out, control.Check{Name: "paths " + c.Name, Status: status, Detail: strings.Join(parts, "; "), Hint: hint})
	}
	return out
}
