package policy

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// aliasBomb is the shape from issue 13: one connection whose peer list has
// `items` bad addresses, then `aliases` references to that connection.
func aliasBomb(aliases, items int) []byte {
	var b strings.Builder
	b.WriteString("connections: [&c {name: c, peer_addresses: [")
	for i := range items {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("x")
	}
	b.WriteString("]}")
	for range aliases {
		b.WriteString(",*c")
	}
	b.WriteString("]\n")
	return []byte(b.String())
}

func loadProblems(t *testing.T, data []byte) (*ConfigError, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := Load("bomb.yaml", data)
	runtime.ReadMemStats(&after)
	var ce *ConfigError
	if c != nil || !errors.As(err, &ce) {
		t.Fatalf("Load: config %v, error %v; want a *ConfigError", c != nil, err)
	}
	return ce, after.TotalAlloc - before.TotalAlloc
}

// TestLoadAliasBomb (issue 13, finding 4): a 24 KB file of aliases must not
// expand into millions of nodes and problems.
func TestLoadAliasBomb(t *testing.T) {
	data := aliasBomb(4004, 1000)
	ce, alloc := loadProblems(t, data)
	text := ce.Error()
	t.Logf("%d-octet file: %d problems listed, %.1f MiB allocated; last line %q", len(data), len(ce.Problems),
		float64(alloc)/(1<<20), text[strings.LastIndexByte(text, '\n')+1:])
	if len(ce.Problems) > 50 || alloc > 64<<20 {
		t.Fatalf("%d problems listed, %.1f MiB allocated; want ≤ 50 and ≤ 64 MiB", len(ce.Problems), float64(alloc)/(1<<20))
	}
	if !strings.Contains(text, "YAML nodes") || !strings.Contains(text, "more problems") {
		t.Fatalf("error does not name the expansion cap and the problems left out:\n%s", text)
	}
}

// TestLoadTooLarge: a file over the size cap is refused before parsing.
func TestLoadTooLarge(t *testing.T) {
	data := []byte(strings.Repeat("# padding\n", 110_000)) // 1.1 MB of comments
	c, err := Load("big.yaml", data)
	if c != nil || err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a %d-octet file: config %v, error %v; want refused for its size", len(data), c != nil, err)
	}
}

// TestLoadProblemsCapped: at most 50 problems are listed, then "and N more".
func TestLoadProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("probes:\n")
	for i := range 300 {
		fmt.Fprintf(&b, "  bogus%d: 1\n", i)
	}
	ce, _ := loadProblems(t, []byte(b.String()))
	lines := strings.Split(ce.Error(), "\n")
	if len(ce.Problems) != 50 || len(lines) != 51 || lines[50] != "bomb.yaml: and 250 more problems" {
		t.Fatalf("%d problems, %d lines, last %q", len(ce.Problems), len(lines), lines[len(lines)-1])
	}
	if ce.Problems[0].Line != 2 || ce.Problems[49].Line != 51 {
		t.Fatalf("listed problems are not the first by line: %v … %v", ce.Problems[0], ce.Problems[49])
	}
}

// TestRanges (issue 13, finding 5): every duration and count has an upper
// bound; values that overflowed the probe scheduler are refused.
func TestRanges(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"probes: {standby_interval: 2562047h}", "probes.standby_interval"},
		{"probes: {active_interval: 2h}", "probes.active_interval"},
		{"probes: {metered_standby_interval: 100000h}", "probes.metered_standby_interval"},
		{"probes: {timeout: 2562047h}", "probes.timeout"},
		{"probes: {timeout: 1ns}", "probes.timeout"},
		{"probes: {loss_threshold: 101}", "probes.loss_threshold"},
		{"connections: [{name: a, hold_down: 2562047h}]", "connections[0].hold_down"},
		{"connections: [{name: a, sla: {max_rtt: 2562047h}}]", "connections[0].sla.max_rtt"},
		{"connections: [{name: a, move_budget: {moves: 2000000000}}]", "connections[0].move_budget.moves"},
		{"connections: [{name: a, move_budget: {window: 2562047h}}]", "connections[0].move_budget.window"},
		{"connections: [{name: a, move_budget: {window: 1ns}}]", "connections[0].move_budget.window"},
		{"connections: [{name: default, hold_down: 1000000h}]", "connections[0].hold_down"},
		{"uplinks: [{name: e, cost: 2000000}]", "uplinks[0].cost"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			c, err := Load("r.yaml", []byte(tc.yaml+"\n"))
			var ce *ConfigError
			if c != nil || !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Field != tc.field {
				t.Fatalf("Load(%s): config %v, error %v; want one problem at %s", tc.yaml, c != nil, err, tc.field)
			}
		})
	}
}

// TestRulePriorityBand (issue 13, finding 6): a band too narrow for the
// steerer's layout (source rules at min, prohibit at min+40, peer rules at
// min+50) and a table among the uplink tables are refused by Load, as the
// steerer refuses them at start.
func TestRulePriorityBand(t *testing.T) {
	for _, tc := range []struct {
		yaml, field string
	}{
		{"steering: {rule_priority: {min: 1000, max: 1020}}", "steering.rule_priority"},
		{"steering: {rule_priority: {min: 1000, max: 1049}}", "steering.rule_priority"},
		{"steering: {table: 2101}", "steering.table"},
		{"steering: {table: 2164}", "steering.table"},
	} {
		c, err := Load("s.yaml", []byte(tc.yaml+"\n"))
		var ce *ConfigError
		if c != nil || !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Field != tc.field {
			t.Errorf("Load(%s): config %v, error %v; want one problem at %s", tc.yaml, c != nil, err, tc.field)
		}
	}
	for _, ok := range []string{"steering: {rule_priority: {min: 1000, max: 1050}}", "steering: {table: 2165}", "steering: {table: 2100}"} {
		if _, err := Load("s.yaml", []byte(ok+"\n")); err != nil {
			t.Errorf("Load(%s): %v", ok, err)
		}
	}
}

// TestEveryNumberHasARange walks the Config type: every numeric field that
// is not an enum must be listed, with its range, by Config.numbers.
func TestEveryNumberHasARange(t *testing.T) {
	want := map[string]bool{}
	stringer := reflect.TypeFor[fmt.Stringer]()
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			switch {
			case ft.PkgPath() != "" && ft.PkgPath() != typ.PkgPath():
				// netip and time types other than Duration are not numbers
				if ft == reflect.TypeFor[time.Duration]() {
					want[p] = true
				}
			case ft.Kind() == reflect.Struct:
				walk(ft, p)
			case ft.Implements(stringer):
				// an enum, checked by name
			case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Float64:
				want[p] = true
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	c := Default()
	c.Uplinks = []UplinkRule{{Name: "e"}}
	c.Conns = []ConnConfig{c.Default}
	got := map[string]bool{}
	for _, n := range c.numbers() {
		got[n.goField] = true
	}
	for f := range want {
		if !got[f] {
			t.Errorf("%s has no range in Config.numbers", f)
		}
	}
	for f := range got {
		if !want[f] {
			t.Errorf("Config.numbers lists %s, which is not a numeric field", f)
		}
	}
	if len(want) < 15 {
		t.Fatalf("walk found only %d numeric fields: %v", len(want), want)
	}
	// Default() is within every range
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestWarningsManyConflicts: 5 000 connections sharing one gateway address
// with alternating nat modes are 6 250 000 conflicting pairs. The warnings
// list the first MaxProblems and count the rest, without formatting them
// (before: all formatted and returned, 20 s and 5.9 GiB).
func TestWarningsManyConflicts(t *testing.T) {
	var b strings.Builder
	b.WriteString("connections:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "  - {name: c%d, peer_addresses: [192.0.2.1], nat: %s}\n", i, []string{"allow", "forbid"}[i%2])
	}
	c, err := Load("w.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ws := c.Warnings()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	// pairs (i, j), i < j, with different nat: 2500×2500, plus the default
	// entry (nat allow, no peer addresses: shares none)
	const conflicts = 2500 * 2500
	if len(ws) != MaxProblems+1 || ws[MaxProblems].Msg != fmt.Sprintf("and %d more warnings", conflicts-MaxProblems) {
		t.Fatalf("%d warnings, last %q", len(ws), ws[len(ws)-1])
	}
	if ws[0].Line != 3 || !strings.Contains(ws[0].Msg, "c1 shares peer address 192.0.2.1 with c0") {
		t.Fatalf("first warning %v", ws[0])
	}
	if alloc > 16<<20 {
		t.Fatalf("Warnings allocated %.1f MiB", float64(alloc)/(1<<20))
	}
	t.Logf("%d conflicting pairs: %d listed, %.1f MiB allocated", conflicts, len(ws)-1, float64(alloc)/(1<<20))
}
