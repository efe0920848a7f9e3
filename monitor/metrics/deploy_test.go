package metrics

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// These tests check the operational artefacts in deploy/ against the metrics
// this package exports, so that a renamed metric breaks the build, not the
// dashboards and alerts.

const deployDir = "../../deploy/"

var metricNameRE = regexp.MustCompile(`\bmobike_[a-z_]+`)

// exposedNames returns every series name a scrape can contain, including the
// _bucket, _sum and _count series of histograms.
func exposedNames() map[string]bool {
	names := map[string]bool{}
	for _, m := range Catalog() {
		names[m.Name] = true
		if m.Type == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m.Name+s] = true
			}
		}
	}
	return names
}

// checkNames reports every mobike_ name in text that is not exported, and
// returns the names found.
func checkNames(t *testing.T, where, text string) []string {
	t.Helper()
	names := exposedNames()
	var found []string
	for _, n := range metricNameRE.FindAllString(text, -1) {
		if !names[n] {
			t.Errorf("%s: references %s, which mobiked does not export", where, n)
		}
		found = append(found, n)
	}
	return found
}

// checkBalanced is a cheap PromQL sanity check: brackets balance and quotes
// close. (The real parser, github.com/prometheus/prometheus/promql/parser,
// would pull the whole Prometheus server module into go.mod.)
func checkBalanced(t *testing.T, where, expr string) {
	t.Helper()
	var stack []rune
	inQuote := false
	for _, r := range expr {
		if inQuote {
			if r == '"' {
				inQuote = false
			}
			continue
		}
		switch r {
		case '"':
			inQuote = true
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			open := map[rune]rune{')': '(', ']': '[', '}': '{'}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				t.Errorf("%s: unbalanced %q in %s", where, r, expr)
				return
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote || len(stack) > 0 {
		t.Errorf("%s: unclosed quote or bracket in %s", where, expr)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	const file = deployDir + "grafana/mobiked-dashboard.json"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s does not parse: %v", file, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", file)
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			where := "panel " + p.Title + " " + tg.RefID
			if tg.Expr == "" {
				t.Errorf("%s: empty expr", where)
			}
			checkBalanced(t, where, tg.Expr)
			if len(checkNames(t, where, tg.Expr)) == 0 {
				t.Errorf("%s: uses no mobike metric: %s", where, tg.Expr)
			}
			for _, n := range metricNameRE.FindAllString(tg.Expr, -1) {
				used[n] = true
			}
		}
	}
	// Every mobike_ name anywhere in the file (template queries too) exists.
	checkNames(t, file, string(data))
	// The dashboard shows what the issue asks for.
	for _, n := range []string{
		"mobike_sa_uplink_info",                   // uplink per SA over time
		"mobike_path_rtt_seconds",                 // per-pair RTT
		"mobike_path_loss_ratio",                  // per-pair loss
		"mobike_steer_total",                      // moves
		"mobike_failover_duration_seconds_bucket", // failover durations
	} {
		if !used[n] {
			t.Errorf("dashboard has no panel on %s", n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRules checks the structure of the rule file (strictly: unknown
// keys fail), each rule's fields, and every metric name in the expressions.
// It does not run the PromQL parser (see checkBalanced).
func TestAlertRules(t *testing.T) {
	const file = deployDir + "prometheus/mobiked-rules.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no groups", file)
	}
	alerts := map[string]string{}
	alertNameRE := regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: want an alerting rule with a name", where)
				continue
			}
			if !alertNameRE.MatchString(r.Alert) {
				t.Errorf("%s: alert names are CamelCase", where)
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("%s: duplicate alert", where)
			}
			alerts[r.Alert] = r.Expr
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: bad for %q: %v", where, r.For, err)
				}
			}
			if sev := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, sev) {
				t.Errorf("%s: severity %q, want info, warning or critical", where, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs summary and description annotations", where)
			}
			checkBalanced(t, where, r.Expr)
			if len(checkNames(t, where, r.Expr)) == 0 {
				t.Errorf("%s: expr uses no mobike metric: %s", where, r.Expr)
			}
		}
	}
	// The alerts the issue asks for, by the metric they watch.
	for alert, metric := range map[string]string{
		"MobikedPathDown":               "mobike_path_state",
		"MobikedSAOnNonPreferredUplink": "mobike_conn_on_preferred_uplink",
		"MobikedSteerFailures":          "mobike_steer_failures_total",
		"MobikedVICIDown":               "mobike_vici_up",
	} {
		if expr, ok := alerts[alert]; !ok || !strings.Contains(expr, metric) {
			t.Errorf("alert %s on %s missing (expr %q)", alert, metric, expr)
		}
	}
}

// TestMetricsDoc checks that deploy/METRICS.md documents every exported
// metric and mentions no metric that does not exist.
func TestMetricsDoc(t *testing.T) {
	const file = deployDir + "METRICS.md"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	checkNames(t, file, string(data))
	for _, m := range Catalog() {
		if !strings.Contains(string(data), "`"+m.Name+"`") {
			t.Errorf("%s does not document `%s`", file, m.Name)
		}
	}
}
