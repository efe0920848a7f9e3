package policy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// dumpConfig renders a Config as stable text for goldens.
func dumpConfig(c *Config) string {
	var b strings.Builder
	for _, u := range c.Uplinks {
		m := "auto"
		if u.Metered != nil {
			m = fmt.Sprint(*u.Metered)
		}
		fmt.Fprintf(&b, "uplink %q kind=%s priority=%d cost=%d metered=%s profile=%s exclude=%v\n",
			u.Name, u.Kind, u.Priority, u.Cost, m, u.ProbeProfile, u.Exclude)
	}
	dumpConn := func(p ConnConfig) {
		fmt.Fprintf(&b, "conn %q uplinks=%q peers=%v nat=%s sla=%v/%s hold_down=%s budget=%d/%s probe=%s\n",
			p.Name, p.Uplinks, p.PeerAddrs, p.NAT, p.SLA.MaxLoss, p.SLA.MaxRTT, p.HoldDown,
			p.MoveBudget.Moves, p.MoveBudget.Window, p.Probe)
	}
	dumpConn(c.Default)
	for _, p := range c.Conns {
		dumpConn(p)
	}
	p := c.Probes
	timeout := "adaptive"
	if p.Timeout != 0 {
		timeout = p.Timeout.String()
	}
	fmt.Fprintf(&b, "probes active=%s standby=%s metered=%s timeout=%s bounds=%s..%s k=%d\n",
		p.ActiveInterval, p.StandbyInterval, p.MeteredStandbyInterval, timeout, p.MinTimeout, p.MaxTimeout, p.LossThreshold)
	fmt.Fprintf(&b, "steering table=%d rules=%d..%d\n", c.Steering.Table, c.Steering.RulePriorityMin, c.Steering.RulePriorityMax)
	fmt.Fprintf(&b, "reflector listen=%v key=%q\n", c.Reflector.Listen, c.Reflector.Key)
	fmt.Fprintf(&b, "metrics listen=%v\ncontrol socket=%s\n", c.MetricsListen, c.ControlSocket)
	fmt.Fprintf(&b, "hooks on_move=%q timeout=%s\n", c.Hooks.OnMove, c.Hooks.Timeout)
	return b.String()
}

// TestLoadGolden loads every testdata/config/*.yaml and compares either the
// error output or the decoded configuration with its .golden twin.
func TestLoadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Load(filepath.Base(file), data)
			var got string
			if err != nil {
				if c != nil {
					t.Errorf("Load returned a config along with an error")
				}
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("error is %T, want *ConfigError: %v", err, err)
				}
				for _, p := range ce.Problems {
					if p.Line == 0 {
						t.Errorf("problem without a line: %s", p)
					}
				}
				got = "error:\n" + err.Error() + "\n"
			} else {
				got = "ok:\n" + dumpConfig(c)
			}
			checkGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", got)
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update after checking):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestLoadExample loads the shipped example configuration.
func TestLoadExample(t *testing.T) {
	const file = "../deploy/mobiked.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, data)
	if err != nil {
		t.Fatalf("example does not load:\n%v", err)
	}
	// The example shows the defaults: its default entry equals Default()'s.
	if d := Default().Default; !slices.Equal(connFields(d, c.Default), nil) {
		t.Errorf("example's default connection differs from Default() in %v", connFields(d, c.Default))
	}
	if got, want := c.Probes, Default().Probes; got != want {
		t.Errorf("example probes = %+v, want the defaults %+v", got, want)
	}
	if c.Steering != Default().Steering || c.MetricsListen != Default().MetricsListen || c.ControlSocket != Default().ControlSocket || c.Hooks != Default().Hooks {
		t.Errorf("example global sections differ from the defaults")
	}
	office := c.Conn("office")
	if office.NAT != NATForbid || office.Probe != MethodSTAMP || office.HoldDown != 30*time.Second {
		t.Errorf("office = %+v", office)
	}
	if office.SLA.MaxLoss != 0.02 || office.MoveBudget.Moves != DefaultMoveBudget {
		t.Errorf("office SLA/budget = %+v / %+v (budget inherited from default)", office.SLA, office.MoveBudget)
	}
	if u := c.UplinkFor("docker0", KindEthernet); !u.Exclude {
		t.Errorf("docker0 not excluded: %+v", u)
	}
	if u := c.UplinkFor("wwan0", KindWWAN); u.Rule != "wwan" || u.Cost != 10 || !u.Metered {
		t.Errorf("wwan0 = %+v", u)
	}
}

func TestZeroConfig(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "---\n"} {
		c, err := Load("empty.yaml", []byte(in))
		if err != nil {
			t.Fatalf("Load(%q): %v", in, err)
		}
		if got, want := dumpConfig(c), dumpConfig(Default()); got != want {
			t.Errorf("Load(%q) =\n%s\nwant Default()\n%s", in, got, want)
		}
	}
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() invalid: %v", err)
	}
	eth, wlan, wwan := c.UplinkFor("eth0", KindEthernet), c.UplinkFor("wlan0", KindWLAN), c.UplinkFor("wwan0", KindWWAN)
	if !(eth.Priority > wlan.Priority && wlan.Priority > wwan.Priority) {
		t.Errorf("zero-config ranking: ethernet %d, wlan %d, wwan %d; want ethernet > wlan > wwan", eth.Priority, wlan.Priority, wwan.Priority)
	}
	if !wwan.Metered || eth.Metered || wlan.Metered {
		t.Errorf("zero-config metered: eth %v wlan %v wwan %v; want only wwan", eth.Metered, wlan.Metered, wwan.Metered)
	}
	if !wwan.MeteredStandby() || eth.MeteredStandby() {
		t.Errorf("zero-config standby pacing wrong")
	}
	p := c.Conn("anything-from-vici")
	if p.Name != "anything-from-vici" || p.HoldDown != DefaultHoldDown || p.NAT != NATAllow {
		t.Errorf("Conn for an unlisted connection = %+v", p)
	}
	if c.MetricsListen.String() != "127.0.0.1:9816" || c.ControlSocket != "/run/mobiked/mobiked.sock" {
		t.Errorf("listen defaults = %v %s", c.MetricsListen, c.ControlSocket)
	}
}

func TestUplinkForFirstMatchWins(t *testing.T) {
	c, err := Load("t.yaml", []byte(`
uplinks:
  - name: wwan0
    priority: 400
  - kind: wwan
    metered: false
  - name: "*"
    cost: 7
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		kind     Kind
		rule     string
		priority int
		metered  bool
		cost     int
	}{
		{"wwan0", KindWWAN, "wwan0", 400, true, 0}, // metered from the kind default
		{"wwan1", KindWWAN, "wwan", PriorityWWAN, false, 0},
		{"eth0", KindEthernet, "*", PriorityEthernet, false, 7},
	}
	for _, tc := range tests {
		u := c.UplinkFor(tc.name, tc.kind)
		if u.Name != tc.name || u.Kind != tc.kind || u.Rule != tc.rule || u.Priority != tc.priority || u.Metered != tc.metered || u.Cost != tc.cost {
			t.Errorf("UplinkFor(%s) = %+v, want rule %q priority %d metered %v cost %d", tc.name, u, tc.rule, tc.priority, tc.metered, tc.cost)
		}
	}
}

// TestValidateInCode checks configs built in code: problems carry the field
// but no line.
func TestValidateInCode(t *testing.T) {
	c := Default()
	c.Conns = append(c.Conns, ConnConfig{Name: "x", HoldDown: -time.Second, MoveBudget: MoveBudget{Moves: 1, Window: time.Second}})
	c.Steering.Table = 220
	err := c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Validate = %v, want *ConfigError", err)
	}
	var fields []string
	for _, p := range ce.Problems {
		fields = append(fields, p.Field)
		if p.Line != 0 {
			t.Errorf("problem %v has a line", p)
		}
	}
	want := []string{"connections[0].hold_down", "steering.table"}
	if !slices.Equal(fields, want) {
		t.Errorf("problem fields = %q, want %q\n%v", fields, want, err)
	}
}

func TestSettings(t *testing.T) {
	c, err := Load("t.yaml", []byte(`
uplinks:
  - kind: wwan
    exclude: true
connections:
  - name: default
    hold_down: 0
    sla: {max_loss: 0, max_rtt: 0}
  - name: office
    uplinks: [ethernet]
    peer_addresses: [192.0.2.1]
    hold_down: 20s
    sla: {max_loss: 0.3, max_rtt: 200ms}
    move_budget: {moves: 7, window: 2m}
    probe: stamp
probes:
  loss_threshold: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Settings()
	c.Conns[0].HoldDown = time.Hour // Settings must not share c
	office := s.Conn("office")
	if office.HoldDown != 20*time.Second || office.MoveBudget != 7 || office.MoveWindow != 2*time.Minute ||
		office.Method != MethodSTAMP || office.SLA.MaxLoss != 0.3 || office.SLA.MaxRTT != 200*time.Millisecond ||
		!slices.Equal(office.ExtraPeers, []netip.Addr{netip.MustParseAddr("192.0.2.1")}) {
		t.Errorf("office = %+v", office)
	}
	if office.Allows(s.Uplink("wwan0", KindWWAN)) || !office.Allows(s.Uplink("eth3", KindEthernet)) {
		t.Errorf("office allowed uplinks wrong")
	}
	if !s.Uplink("wwan0", KindWWAN).Exclude {
		t.Errorf("wwan not excluded through Settings.Uplink")
	}
	// Resolved zeros keep their meaning through ConnPolicy's "zero = default".
	other := s.Conn("other")
	if other.HoldDown != 0 {
		t.Errorf("hold_down 0 became %s, want fail back at once", other.HoldDown)
	}
	if other.SLA.Met(0.001, time.Hour) || !other.SLA.Met(0, time.Hour) {
		t.Errorf("max_loss 0 / max_rtt 0 (no limit) not kept: %+v", other.SLA)
	}
	if s.WithDefaults().Path.DownAfter != 5 {
		t.Errorf("loss_threshold not converted: %+v", s.Path)
	}
	if other.SLA.MaxRTT != time.Duration(math.MaxInt64) {
		t.Errorf("no RTT limit = %s", other.SLA.MaxRTT)
	}
}

func TestClone(t *testing.T) {
	data, err := os.ReadFile("../deploy/mobiked.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load("mobiked.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Clone()
	if d := Diff(c, n); len(d) != 0 {
		t.Fatalf("Diff(c, Clone(c)) = %v", d)
	}
	*n.Uplinks[0].Metered = true
	n.Conns[0].PeerAddrs[0] = netip.MustParseAddr("192.0.2.99")
	n.Conns[0].Uplinks[0] = "changed"
	if d := Diff(c, n); len(d) != 2 {
		t.Errorf("clone shares memory with the original: Diff = %v", d)
	}
}

func TestDiff(t *testing.T) {
	base := `
uplinks:
  - name: eth0
  - kind: wwan
    metered: true
connections:
  - name: office
    hold_down: 30s
  - name: branch
`
	tests := []struct {
		name string
		new  string
		want []string
	}{
		{"same", base, nil},
		{"same-with-comments", "# c\n" + base, nil},
		{"conn-added-removed", `
uplinks:
  - name: eth0
  - kind: wwan
    metered: true
connections:
  - name: office
    hold_down: 30s
  - name: lab
`, []string{"conn-added lab", "conn-removed branch"}},
		{"conn-changed", strings.Replace(base, "hold_down: 30s", "hold_down: 1m\n    nat: forbid", 1),
			[]string{"conn-changed office: nat, hold_down"}},
		{"default-changed-propagates", base + "  - name: default\n    probe: stamp\n",
			[]string{"default-changed: probe", "conn-changed office: probe", "conn-changed branch: probe"}},
		{"uplink-changed-added", strings.Replace(base, "metered: true", "metered: false", 1) + "  # x\n",
			[]string{"uplink-changed wwan: metered"}},
		{"uplink-metered-unset", strings.Replace(base, "    metered: true\n", "", 1),
			[]string{"uplink-changed wwan: metered"}},
		{"uplinks-reordered", `
uplinks:
  - kind: wwan
    metered: true
  - name: eth0
  - name: eth1
connections:
  - name: office
    hold_down: 30s
  - name: branch
`, []string{"uplink-added eth1", "uplinks-reordered"}},
		{"globals", base + `
probes: {timeout: 2s}
steering: {table: 3000}
reflector: {listen: "[::]:862"}
metrics: {listen: "0.0.0.0:9816"}
control: {socket: /run/m.sock}
hooks: {on_move: /usr/local/sbin/on-move, timeout: 3s}
`, []string{"probes-changed: timeout", "steering-changed: table", "reflector-changed: listen",
			"metrics-listen-changed: listen", "control-socket-changed: socket", "hooks-changed: on_move, timeout"}},
		{"metrics on every address", base + `
metrics: {listen: ":9816"}
`, []string{"metrics-listen-changed: listen"}},
	}
	old, err := Load("old.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Load("new.yaml", []byte(tc.new))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range Diff(old, n) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Diff =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestChangeKindNeedsRestart(t *testing.T) {
	var restart []string
	for k := UplinkAdded; k <= ControlSocketChanged; k++ {
		if strings.HasPrefix(k.String(), "change(") {
			t.Errorf("kind %d has no name", k)
		}
		if k.NeedsRestart() {
			restart = append(restart, k.String())
		}
	}
	want := []string{"steering-changed", "metrics-listen-changed", "control-socket-changed"}
	if !slices.Equal(restart, want) {
		t.Errorf("NeedsRestart kinds = %v, want %v", restart, want)
	}
}

func TestReflectorKey(t *testing.T) {
	r := Reflector{Key: "00112233445566778899aabbccddeeff"}
	if b, ok := r.KeyHex(); !ok || len(b) != 16 || b[15] != 0xff {
		t.Errorf("KeyHex = %x, %v", b, ok)
	}
	if _, ok := r.KeyFile(); ok {
		t.Errorf("hex key taken for a file")
	}
	r = Reflector{Key: "/etc/mobiked/stamp.key"}
	if p, ok := r.KeyFile(); !ok || p != r.Key {
		t.Errorf("KeyFile = %q, %v", p, ok)
	}
	if _, ok := r.KeyHex(); ok {
		t.Errorf("file path taken for hex")
	}
}

// FuzzLoad checks that Load never panics, and that whatever it accepts
// validates, survives Clone and diffs as equal to itself.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	files = append(files, "../deploy/mobiked.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load("fuzz.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config Validate rejects: %v", err)
		}
		if d := Diff(c, c.Clone()); len(d) != 0 {
			t.Fatalf("Diff(c, Clone) = %v", d)
		}
		_ = c.Settings().WithDefaults()
	})
}

// TestLoadKubernetesConfigMap loads the config embedded in the DaemonSet's
// ConfigMap.
func TestLoadKubernetesConfigMap(t *testing.T) {
	const file = "../deploy/kubernetes/mobiked-daemonset.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	found := false
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc.Kind != "ConfigMap" {
			continue
		}
		found = true
		c, err := Load(file+" (ConfigMap mobiked.yaml)", []byte(doc.Data["mobiked.yaml"]))
		if err != nil {
			t.Fatalf("ConfigMap config does not load:\n%v", err)
		}
		// The DaemonSet sets the listener by flag (the node's IP): a
		// ConfigMap listening on every address of the host network would
		// expose the metrics on the WAN uplinks.
		if c.MetricsListen.Addr().IsUnspecified() {
			t.Errorf("metrics listen = %v: every address of the host network, WAN uplinks included", c.MetricsListen)
		}
	}
	if !found {
		t.Fatalf("%s has no ConfigMap", file)
	}
}

// TestConfigImports keeps the config half of the package pure: standard
// library without I/O, plus the YAML decoder.
func TestConfigImports(t *testing.T) {
	files, _ := filepath.Glob("config*.go")
	allowed := []string{"bytes", "io", "errors", "fmt", "math", "net/netip", "path", "regexp", "slices", "strconv", "strings", "time", "go.yaml.in/yaml/v3"}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(allowed, p) {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

func BenchmarkLoadExample(b *testing.B) {
	data, err := os.ReadFile("../deploy/mobiked.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load("mobiked.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
