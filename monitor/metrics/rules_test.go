package metrics

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestAlertRulesPromParser loads the alert rules with Prometheus' own rule
// file parser, which also parses every PromQL expression (what promtool
// check rules does).
func TestAlertRulesPromParser(t *testing.T) {
	const file = deployDir + "prometheus/mobiked-rules.yaml"
	p := parser.NewParser(parser.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, log)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", file, errs)
	}
	n := 0
	for _, g := range groups.Groups {
		n += len(g.Rules)
	}
	if n == 0 {
		t.Fatalf("%s: no rules", file)
	}
	// The parser must catch a broken expression (the test can fail).
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	broken := strings.Replace(string(data), "expr: ", "expr: nosuchfunction(", 1)
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs := rulefmt.ParseFile(bad, false, model.UTF8Validation, p, log); len(errs) == 0 {
		t.Fatal("a broken expression was accepted")
	}
}
