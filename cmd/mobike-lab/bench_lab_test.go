package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// TestLabBenchLinkdown runs `bench --scenario linkdown` end to end against
// real charon, in both modes: the JSON has one measured run per mode in which
// the SA moved off uplink a and the tunnel recovered, mobiked's probes were
// counted, and the SVG timeline is valid XML.
func TestLabBenchLinkdown(t *testing.T) {
	lab.RequireRoot(t)
	binDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", binDir, "../mobiked").CombinedOutput(); err != nil {
		t.Fatalf("build mobiked: %v\n%s", err, out)
	}
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	const name = "mlbench"
	t.Cleanup(func() { _ = lab.Down(context.Background(), name) })
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "bench.json")
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--name", name, "--scenario", "linkdown", "--json", jsonPath, "--svg", dir}, &out, &errb)
	t.Logf("bench output:\n%s", out.String())
	if code != 0 {
		t.Fatalf("bench exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 2 || rep.Machine.NProc == 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, sc := range rep.Scenarios {
		if sc.Name != "linkdown" || len(sc.Runs) != 1 {
			t.Fatalf("scenario %+v", sc)
		}
		r := sc.Runs[0]
		if r.Failed || !r.Recovered || !r.SASurvived || r.Moves < 1 || r.ConfirmS == nil || r.OutageS <= 0 || r.OutageS > 10 {
			t.Errorf("%s: implausible run %+v", sc.Mode, r)
		}
		if (sc.Mode == ModeMobiked) != (r.ProbeBytes > 0) {
			t.Errorf("%s: probe bytes %d", sc.Mode, r.ProbeBytes)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "linkdown.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Fatalf("timeline is not valid XML: %v", err)
	}
}
