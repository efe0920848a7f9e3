package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File  string
	Line  int    // 1-based; 0 when unknown
	Field string // dotted path of the field, e.g. "connections[1].hold_down"; "" for syntax errors
	Msg   string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(":")
	}
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(":")
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Limits of what Load reads: a hostile or broken file gets one clear error,
// never minutes of CPU or gigabytes of memory.
const (
	// MaxConfigSize caps the file (a config of 1 000 connections is ~100 KB).
	MaxConfigSize = 1 << 20
	// MaxNodes caps the YAML nodes the decoder visits, counting each node
	// reached through an alias again: aliases are allowed, but a few KB of
	// them can expand to millions of nodes ("billion laughs").
	MaxNodes = 100_000
	// MaxProblems caps the problems listed; the rest are counted.
	MaxProblems = 50
)

// ConfigError lists the problems of a configuration in file order: the first
// MaxProblems, and how many more there were.
type ConfigError struct {
	Problems []Problem
	More     int    // problems left out of Problems
	File     string // names the file on the "and N more" line
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems), len(e.Problems)+1)
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if e.More > 0 {
		lines = append(lines, Problem{File: e.File, Msg: fmt.Sprintf("and %d more problems", e.More)}.String())
	}
	return strings.Join(lines, "\n")
}

// problemSet keeps the first MaxProblems problems by line (stable: equal
// lines keep their order) and counts all of them, so that a file with
// millions of problems costs neither the memory nor the formatting.
type problemSet struct {
	list  []Problem
	total int
	// first is listed ahead of the rest (the reason decoding stopped).
	first *Problem
}

// wants reports whether a problem on line would be listed.
func (s *problemSet) wants(line int) bool {
	return len(s.list) < MaxProblems || line < s.list[len(s.list)-1].Line
}

func (s *problemSet) add(p Problem) {
	s.total++
	if !s.wants(p.Line) {
		return
	}
	i := len(s.list)
	for i > 0 && s.list[i-1].Line > p.Line {
		i--
	}
	s.list = slices.Insert(s.list, i, p)
	if len(s.list) > MaxProblems {
		s.list = s.list[:MaxProblems]
	}
}

// err returns the *ConfigError, or nil without problems.
func (s *problemSet) err(file string) error {
	if s.total == 0 {
		return nil
	}
	list := s.list
	if s.first != nil {
		list = append([]Problem{*s.first}, list...)
		if len(list) > MaxProblems {
			list = list[:MaxProblems]
		}
	}
	return &ConfigError{Problems: list, More: s.total - len(list), File: file}
}

// Load decodes and validates a YAML configuration. name is the file name
// used in problems. Unknown keys, wrong types, bad values and broken
// references are all reported, each with its line, in one *ConfigError; on
// error no Config is returned. An empty or comment-only file is the
// zero-config Default.
//
// Files over MaxConfigSize are refused unread, the decoder stops after
// MaxNodes nodes, and at most MaxProblems problems are listed.
func Load(name string, data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, &ConfigError{Problems: []Problem{{File: name,
			Msg: fmt.Sprintf("file is larger than %d KiB (%d octets)", MaxConfigSize>>10, len(data))}}}
	}
	d := decoder{file: name, pos: map[string]int{}}
	c := Default()
	c.file = name
	c.pos = d.pos

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, &ConfigError{Problems: []Problem{syntaxProblem(name, err)}}
	}
	if len(doc.Content) > 0 {
		d.config(doc.Content[0], c)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		d.problems.add(syntaxProblem(name, err))
	default:
		d.addf(&next, "", "a second YAML document; the config is one document")
	}
	if !d.overflow {
		// (an incomplete config would only add noise)
		v := validator{file: name, pos: d.pos, problems: &d.problems}
		c.validate(&v)
	}
	if err := d.problems.err(name); err != nil {
		return nil, err
	}
	return c, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 parse error into a Problem with its line.
func syntaxProblem(file string, err error) Problem {
	p := Problem{File: file, Msg: "yaml: " + err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return p
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = "yaml: " + m[2]
	}
	return p
}

// decoder walks a yaml.Node tree into a Config, recording the line of every
// field and every problem instead of stopping at the first.
type decoder struct {
	file     string
	pos      map[string]int
	problems problemSet
	nodes    int  // nodes visited, aliases expanded
	overflow bool // nodes passed MaxNodes: nothing more is decoded
}

// visit counts a node and reports whether decoding may go on.
func (d *decoder) visit(n *yaml.Node) bool {
	if d.overflow {
		return false
	}
	if d.nodes++; d.nodes > MaxNodes {
		d.overflow = true
		d.problems.first = &Problem{File: d.file, Line: n.Line,
			Msg: fmt.Sprintf("the document expands to more than %d YAML nodes (aliases referring to large values?); not read further", MaxNodes)}
		d.problems.total++
		return false
	}
	return true
}

func (d *decoder) addf(n *yaml.Node, field, format string, args ...any) {
	if !d.problems.wants(n.Line) {
		d.problems.total++ // counted, never listed: not worth formatting
		return
	}
	d.problems.add(Problem{File: d.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases; anchors and aliases are allowed.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// mapping decodes a mapping node: each key must be in fields, at most once.
// A null node (an empty section) is accepted as an empty mapping.
func (d *decoder) mapping(n *yaml.Node, field string, fields map[string]func(v *yaml.Node, f string)) {
	n = resolve(n)
	if !d.visit(n) || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.addf(n, field, "expected a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !d.overflow; i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.addf(k, field, "mapping keys must be plain strings")
			continue
		}
		if k.Tag == "!!merge" {
			d.addf(k, field, "merge keys (<<) are not supported; repeat the keys or use an alias for the whole value")
			continue
		}
		f := k.Value
		if field != "" {
			f = field + "." + k.Value
		}
		if prev, dup := seen[k.Value]; dup {
			d.addf(k, f, "duplicate key (first at line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		fn, ok := fields[k.Value]
		if !ok {
			d.addf(k, f, "unknown key %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		d.pos[f] = k.Line
		fn(v, f)
	}
}

// suggest returns " (did you mean x?)" for a near miss.
func suggest(key string, fields map[string]func(*yaml.Node, string)) string {
	best, bestDist := "", 3
	for k := range fields {
		if dist := editDistance(key, k); dist < bestDist || (dist == bestDist && best != "" && k < best) {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// sequence calls fn for each item of a list. A null node is an empty list.
func (d *decoder) sequence(n *yaml.Node, field string, fn func(i int, v *yaml.Node, f string)) {
	n = resolve(n)
	if !d.visit(n) || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.addf(n, field, "expected a list, got %s", describe(n))
		return
	}
	for i, v := range n.Content {
		if d.overflow {
			return
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		d.pos[f] = v.Line
		fn(i, resolve(v), f)
	}
}

func (d *decoder) scalar(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if !d.visit(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.addf(n, field, "expected a value, got %s", describeValue(n))
		return "", false
	}
	return n.Value, true
}

func describeValue(n *yaml.Node) string {
	if isNull(n) {
		return "nothing"
	}
	return describe(n)
}

func (d *decoder) str(n *yaml.Node, field string, dst *string) {
	if s, ok := d.scalar(n, field); ok {
		*dst = s
	}
}

func (d *decoder) boolean(n *yaml.Node, field string, dst *bool) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	switch s {
	case "true", "yes", "on":
		*dst = true
	case "false", "no", "off":
		*dst = false
	default:
		d.addf(n, field, "expected true or false, got %q", s)
	}
}

func (d *decoder) integer(n *yaml.Node, field string, dst *int) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	x, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		d.addf(n, field, "expected an integer, got %q", s)
		return
	}
	*dst = int(x)
}

func (d *decoder) float(n *yaml.Node, field string, dst *float64) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	if p, isPct := strings.CutSuffix(s, "%"); isPct {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			d.addf(n, field, "expected a ratio like 0.05 or 5%%, got %q", s)
			return
		}
		*dst = x / 100
		return
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		d.addf(n, field, "expected a ratio like 0.05 or 5%%, got %q", s)
		return
	}
	*dst = x
}

// duration accepts Go durations with a unit ("200ms", "1m30s"); a bare
// number is refused because its unit would be a guess. "0" is allowed.
func (d *decoder) duration(n *yaml.Node, field string, dst *time.Duration) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	if s == "0" {
		*dst = 0
		return
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			d.addf(n, field, "duration %q needs a unit, e.g. %sms or %ss", s, s, s)
		} else {
			d.addf(n, field, "bad duration %q (want e.g. 200ms, 30s, 5m)", s)
		}
		return
	}
	*dst = x
}

func (d *decoder) addrPort(n *yaml.Node, field string, dst *netip.AddrPort) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	if s == "" {
		*dst = netip.AddrPort{}
		return
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		d.addf(n, field, "bad address %q (want ip:port or [ipv6]:port)", s)
		return
	}
	if ap.Port() == 0 {
		d.addf(n, field, "address %q needs a non-zero port", s)
		return
	}
	*dst = ap
}

// listenAddr is addrPort that also takes ":PORT" (every address, as
// Prometheus exporters accept it): stored as [::]:PORT, which Go listens on
// for IPv4 and IPv6.
func (d *decoder) listenAddr(n *yaml.Node, field string, dst *netip.AddrPort) {
	s, ok := d.scalar(n, field)
	if !ok {
		return
	}
	if p, ok := strings.CutPrefix(s, ":"); ok {
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil || port == 0 {
			d.addf(n, field, "bad address %q (want ip:port, [ipv6]:port or :port)", s)
			return
		}
		*dst = netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port))
		return
	}
	d.addrPort(n, field, dst)
}

func (d *decoder) config(n *yaml.Node, c *Config) {
	d.mapping(n, "", map[string]func(*yaml.Node, string){
		"uplinks": func(v *yaml.Node, f string) {
			d.sequence(v, f, func(_ int, item *yaml.Node, f string) {
				var u UplinkRule
				d.uplink(item, f, &u)
				c.Uplinks = append(c.Uplinks, u)
			})
		},
		"connections": func(v *yaml.Node, f string) { d.connections(v, f, c) },
		"probes":      func(v *yaml.Node, f string) { d.probes(v, f, &c.Probes) },
		"steering":    func(v *yaml.Node, f string) { d.steering(v, f, &c.Steering) },
		"reflector": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"listen": func(v *yaml.Node, f string) { d.addrPort(v, f, &c.Reflector.Listen) },
				"key":    func(v *yaml.Node, f string) { d.str(v, f, &c.Reflector.Key) },
			})
		},
		"metrics": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"listen": func(v *yaml.Node, f string) { d.listenAddr(v, f, &c.MetricsListen) },
			})
		},
		"control": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"socket": func(v *yaml.Node, f string) { d.str(v, f, &c.ControlSocket) },
			})
		},
		"hooks": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"on_move": func(v *yaml.Node, f string) { d.str(v, f, &c.Hooks.OnMove) },
				"timeout": func(v *yaml.Node, f string) { d.duration(v, f, &c.Hooks.Timeout) },
			})
		},
	})
}

func (d *decoder) uplink(n *yaml.Node, field string, u *UplinkRule) {
	d.mapping(n, field, map[string]func(*yaml.Node, string){
		"name": func(v *yaml.Node, f string) { d.str(v, f, &u.Name) },
		"kind": func(v *yaml.Node, f string) {
			if s, ok := d.scalar(v, f); ok {
				k, ok := parseKind(s)
				if !ok {
					d.addf(v, f, "unknown kind %q (want ethernet, wlan or wwan)", s)
				}
				u.Kind = k
			}
		},
		"priority": func(v *yaml.Node, f string) {
			x := u.Priority
			before := d.problems.total
			d.integer(v, f, &x)
			if d.problems.total > before {
				return
			}
			if x == 0 {
				// 0 means "by kind" in the struct; in a file it is just out of range.
				d.addf(v, f, "priority 0 out of range %d..%d", MinPriority, MaxPriority)
				return
			}
			u.Priority = x
		},
		"cost": func(v *yaml.Node, f string) { d.integer(v, f, &u.Cost) },
		"metered": func(v *yaml.Node, f string) {
			var b bool
			before := d.problems.total
			d.boolean(v, f, &b)
			if d.problems.total == before {
				u.Metered = &b
			}
		},
		"probe_profile": func(v *yaml.Node, f string) {
			if s, ok := d.scalar(v, f); ok {
				switch s {
				case "auto":
					u.ProbeProfile = StandbyAuto
				case "standby":
					u.ProbeProfile = StandbyNormal
				case "metered-standby":
					u.ProbeProfile = StandbyMetered
				default:
					d.addf(v, f, "unknown probe profile %q (want auto, standby or metered-standby)", s)
				}
			}
		},
		"exclude": func(v *yaml.Node, f string) { d.boolean(v, f, &u.Exclude) },
	})
}

// connections decodes the connections list in two passes: the "default"
// entry first, so that named entries (wherever they are) inherit from it.
func (d *decoder) connections(n *yaml.Node, field string, c *Config) {
	n = resolve(n)
	if !d.visit(n) || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.addf(n, field, "expected a list, got %s", describe(n))
		return
	}
	defaultAt := -1
	for i, item := range n.Content {
		if connName(resolve(item)) != DefaultConnName {
			continue
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		if defaultAt >= 0 {
			d.addf(item, f+".name", "duplicate connection %q (first at line %d)", DefaultConnName, n.Content[defaultAt].Line)
			continue
		}
		defaultAt = i
		d.pos[f] = item.Line
		d.conn(resolve(item), f, &c.Default)
		c.defaultField = f
	}
	for i, item := range n.Content {
		if d.overflow {
			return
		}
		if connName(resolve(item)) == DefaultConnName {
			continue
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		d.pos[f] = item.Line
		p := c.Default.clone()
		p.Name = ""
		d.conn(resolve(item), f, &p)
		c.Conns = append(c.Conns, p)
		c.connFields = append(c.connFields, f)
	}
}

// connName returns the name of a connections entry without reporting
// problems (the second pass does).
func connName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && resolve(n.Content[i+1]).Kind == yaml.ScalarNode {
			return resolve(n.Content[i+1]).Value
		}
	}
	return ""
}

func (d *decoder) conn(n *yaml.Node, field string, p *ConnConfig) {
	d.mapping(n, field, map[string]func(*yaml.Node, string){
		"name": func(v *yaml.Node, f string) { d.str(v, f, &p.Name) },
		"uplinks": func(v *yaml.Node, f string) {
			p.Uplinks = nil
			d.sequence(v, f, func(_ int, item *yaml.Node, f string) {
				var s string
				d.str(item, f, &s)
				p.Uplinks = append(p.Uplinks, s)
			})
		},
		"peer_addresses": func(v *yaml.Node, f string) {
			p.PeerAddrs = nil
			d.sequence(v, f, func(_ int, item *yaml.Node, f string) {
				s, ok := d.scalar(item, f)
				if !ok {
					return
				}
				a, err := netip.ParseAddr(s)
				if err != nil {
					d.addf(item, f, "bad address %q", s)
					return
				}
				p.PeerAddrs = append(p.PeerAddrs, a)
			})
		},
		"nat": func(v *yaml.Node, f string) {
			if s, ok := d.scalar(v, f); ok {
				switch s {
				case "allow":
					p.NAT = NATAllow
				case "forbid":
					p.NAT = NATForbid
				default:
					d.addf(v, f, "bad nat value %q (want allow or forbid)", s)
				}
			}
		},
		"sla": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"max_loss": func(v *yaml.Node, f string) { d.float(v, f, &p.SLA.MaxLoss) },
				"max_rtt":  func(v *yaml.Node, f string) { d.duration(v, f, &p.SLA.MaxRTT) },
			})
		},
		"hold_down": func(v *yaml.Node, f string) { d.duration(v, f, &p.HoldDown) },
		"move_budget": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"moves":  func(v *yaml.Node, f string) { d.integer(v, f, &p.MoveBudget.Moves) },
				"window": func(v *yaml.Node, f string) { d.duration(v, f, &p.MoveBudget.Window) },
			})
		},
		"probe": func(v *yaml.Node, f string) {
			if s, ok := d.scalar(v, f); ok {
				switch s {
				case "icmp":
					p.Probe = MethodICMP
				case "stamp":
					p.Probe = MethodSTAMP
				case "ike":
					p.Probe = MethodIKE
				default:
					d.addf(v, f, "unknown probe method %q (want icmp, stamp or ike)", s)
				}
			}
		},
	})
}

func (d *decoder) probes(n *yaml.Node, field string, p *Probes) {
	d.mapping(n, field, map[string]func(*yaml.Node, string){
		"active_interval":          func(v *yaml.Node, f string) { d.duration(v, f, &p.ActiveInterval) },
		"standby_interval":         func(v *yaml.Node, f string) { d.duration(v, f, &p.StandbyInterval) },
		"metered_standby_interval": func(v *yaml.Node, f string) { d.duration(v, f, &p.MeteredStandbyInterval) },
		"timeout":                  func(v *yaml.Node, f string) { d.duration(v, f, &p.Timeout) },
		"min_timeout":              func(v *yaml.Node, f string) { d.duration(v, f, &p.MinTimeout) },
		"max_timeout":              func(v *yaml.Node, f string) { d.duration(v, f, &p.MaxTimeout) },
		"loss_threshold":           func(v *yaml.Node, f string) { d.integer(v, f, &p.LossThreshold) },
	})
}

func (d *decoder) steering(n *yaml.Node, field string, s *Steering) {
	d.mapping(n, field, map[string]func(*yaml.Node, string){
		"table": func(v *yaml.Node, f string) {
			str, ok := d.scalar(v, f)
			if !ok {
				return
			}
			x, err := strconv.ParseUint(str, 10, 32)
			if err != nil {
				d.addf(v, f, "expected a table number 1..4294967295, got %q", str)
				return
			}
			s.Table = uint32(x)
		},
		"rule_priority": func(v *yaml.Node, f string) {
			d.mapping(v, f, map[string]func(*yaml.Node, string){
				"min": func(v *yaml.Node, f string) { d.integer(v, f, &s.RulePriorityMin) },
				"max": func(v *yaml.Node, f string) { d.integer(v, f, &s.RulePriorityMax) },
			})
		},
	})
}
