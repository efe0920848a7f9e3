package lab

import (
	"os"
	"testing"
)

func TestSumMetric(t *testing.T) {
	text := `# HELP mobike_probe_bytes_total Bytes of path probes sent.
# TYPE mobike_probe_bytes_total counter
mobike_probe_bytes_total{uplink="eth0"} 1200
mobike_probe_bytes_total{uplink="eth1"} 3.5e+02
mobike_probe_bytes_total_extra 99
mobike_probes_total{uplink="eth0"} 7
`
	if got := SumMetric(text, "mobike_probe_bytes_total"); got != 1550 {
		t.Fatalf("sum = %v, want 1550", got)
	}
	if got := SumMetric("plain 3\n", "plain"); got != 3 {
		t.Fatalf("unlabelled sum = %v, want 3", got)
	}
	if got := SumMetric(text, "absent"); got != 0 {
		t.Fatalf("absent = %v", got)
	}
}

func TestReadProcStatsSelf(t *testing.T) {
	ps, err := ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps.RSSBytes <= 0 || ps.HWMBytes < ps.RSSBytes {
		t.Fatalf("implausible memory %+v", ps)
	}
	if _, err := ReadProcStats(-1); err == nil {
		t.Fatal("no error for a missing process")
	}
}
