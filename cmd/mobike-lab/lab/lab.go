// Package lab builds and drives mobiked's test lab: real strongSwan charon
// 5.9.8 in three network namespaces (a multihomed client "mn", a router "r",
// a multihomed gateway "gw"), with impairments done by nftables in the router.
//
// Everything a lab creates is named after its Name prefix (namespaces
// NAME-mn, NAME-r, NAME-gw; files under /etc/netns/NAME-* and StateRoot/NAME),
// so several labs can coexist and Down removes exactly what Up made. Processes
// are stopped by the pids the lab recorded (or, after a crash, by the pids the
// kernel lists in the lab's own namespaces), never by name.
//
// The topology and the charon settings follow ../shared/docs/lab-notes.md:
// kernel-libipsec with UDP encapsulation (the kernel has no ESP), a private
// /run per charon, per-namespace strongswan.conf through /etc/netns.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateRoot is where labs keep their files (not under /run: each charon mounts
// a private tmpfs over /run, which would hide its VICI socket).
var StateRoot = "/var/tmp/mobike-lab"

// CharonBin is the charon daemon started in the namespaces.
var CharonBin = "/usr/lib/ipsec/charon"

// Fixed lab addresses.
var (
	MNAddrA    = netip.MustParseAddr("10.1.0.2")
	MNAddrB    = netip.MustParseAddr("10.2.0.2")
	MNAddr6A   = netip.MustParseAddr("fd00:1::2")
	MNAddr6B   = netip.MustParseAddr("fd00:2::2")
	GWAddr1    = netip.MustParseAddr("10.3.0.2")
	GWAddr2    = netip.MustParseAddr("10.4.0.2")
	GWAddr6_1  = netip.MustParseAddr("fd00:3::2")
	GWAddr6_2  = netip.MustParseAddr("fd00:4::2")
	RouterA    = netip.MustParseAddr("10.1.0.1")
	RouterB    = netip.MustParseAddr("10.2.0.1")
	PingTarget = netip.MustParseAddr("10.9.0.1")
	VIPPool    = netip.MustParsePrefix("10.50.0.0/24")
	// The LAN behind mn (Options.LAN): mn's eth2 and the host in "lan".
	LANGateway = netip.MustParseAddr("10.8.0.1")
	LANHost    = netip.MustParseAddr("10.8.0.2")
)

// Nodes of the lab ("lan" only with Options.LAN).
var Nodes = []string{"mn", "r", "gw", "lan"}

// nodes are the nodes this lab has.
func (l *Lab) nodes() []string {
	if l.St.LAN {
		return Nodes
	}
	return Nodes[:3]
}

// ConnName is the name of mn's k-th connection to the gateway (1: "lab").
func ConnName(k int) string {
	if k <= 1 {
		return "lab"
	}
	return "lab" + strconv.Itoa(k)
}

// Options configure Up.
type Options struct {
	Name       string        // prefix, default "mlab"
	NATB       bool          // masquerade uplink b in the router
	DPD        time.Duration // mn's dpd_delay (0 = 30s)
	Controller bool          // charon gets deploy/strongswan.d/mobiked.conf and mobiked runs in mn
	NoSA       bool          // do not initiate the SA at the end of Up
	// CharonDefaults leaves mobiked's settings out of mn's charon in
	// Controller mode (mobiked still runs): what `mobikectl doctor` must catch.
	CharonDefaults bool
	// ControllerConf is the strongswan.conf snippet for Controller mode
	// (normally deploy.MobikedConf). Required when Controller is set.
	ControllerConf string
	// StartController starts mobiked in mn after the lab is up (Controller
	// mode). It returns the pid of the process it started.
	StartController func(ctx context.Context, l *Lab) (int, error)
	// ExtraConns adds that many childless IKE connections s1..sN to mn (the
	// gateway accepts any identity), for the scale benchmark.
	ExtraConns int
	// Conns is the number of connections with a tunnel from mn to the
	// gateway: "lab", then "lab2".."labN", each with its own identity and
	// virtual IP (so `ping --conn labK` reaches PingTarget through it). 0 = 1.
	Conns int
	// LAN adds a fourth namespace "lan" behind mn: mn's eth2 LANGateway/24,
	// the host LANHost with its default route via mn (a LAN behind a
	// gateway; main's connected route must win over mobiked's uplink tables).
	LAN bool
	Log io.Writer // progress output, may be nil
}

// Lab is a running (or recorded) lab.
type Lab struct {
	Name string
	Dir  string
	St   State
	log  io.Writer
}

// State is what a lab records about itself in Dir/state.json.
type State struct {
	NATB       bool                   `json:"nat_b"`
	DPD        string                 `json:"dpd"`
	Controller bool                   `json:"controller"`
	Impair     map[string]Impairment  `json:"impair,omitempty"`
	Delays     map[string]DelayLine   `json:"delays,omitempty"`
	Pids       map[string]int         `json:"pids,omitempty"`
	Extra      int                    `json:"extra_conns,omitempty"`
	Conns      int                    `json:"conns,omitempty"`
	LAN        bool                   `json:"lan,omitempty"`
	Meta       map[string]interface{} `json:"meta,omitempty"`
}

// ErrNoStrongSwan means strongSwan (or another tool the lab needs) is missing.
var ErrNoStrongSwan = errors.New("strongSwan is not installed (run `make deps`)")

// Tools are the programs the lab runs besides charon and swanctl; CheckTools
// wants each on PATH (deps_test: each comes from a package `make deps`
// installs).
var Tools = []string{"ip", "nft", "ping", "sysctl", "unshare"}

// CheckTools reports which required programs are missing.
func CheckTools() error {
	var missing []string
	for _, p := range []string{CharonBin, "/usr/sbin/swanctl"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrNoStrongSwan, strings.Join(missing, ", "))
	}
	if err := checkPlugins(); err != nil {
		return err
	}
	for _, p := range Tools {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing tools %s (run `make deps`)", strings.Join(missing, ", "))
	}
	return nil
}

func validName(name string) error {
	if name == "" || len(name) > 10 {
		return fmt.Errorf("lab: name %q must be 1-10 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("lab: name %q may only contain a-z, 0-9 and _", name)
		}
	}
	return nil
}

func newLab(name string, log io.Writer) *Lab {
	if log == nil {
		log = io.Discard
	}
	return &Lab{Name: name, Dir: filepath.Join(StateRoot, name), log: log}
}

// NS returns the namespace name of a node.
func (l *Lab) NS(node string) string { return l.Name + "-" + node }

// VICISocket returns the path of node's charon VICI socket.
func (l *Lab) VICISocket(node string) string { return filepath.Join(l.Dir, node+".vici") }

// CharonLog returns the path of node's charon file log.
func (l *Lab) CharonLog(node string) string { return filepath.Join(l.Dir, node+"-charon.log") }

func (l *Lab) logf(format string, args ...any) { fmt.Fprintf(l.log, format+"\n", args...) }

// Open attaches to a lab started earlier (possibly by another process).
func Open(name string) (*Lab, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	l := newLab(name, nil)
	b, err := os.ReadFile(filepath.Join(l.Dir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("lab %s is not up: %w", name, err)
	}
	if err := json.Unmarshal(b, &l.St); err != nil {
		return nil, fmt.Errorf("lab %s: read state: %w", name, err)
	}
	if l.St.Impair == nil {
		l.St.Impair = map[string]Impairment{}
	}
	if l.St.Pids == nil {
		l.St.Pids = map[string]int{}
	}
	return l, nil
}

// SetLog sets where progress goes.
func (l *Lab) SetLog(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	l.log = w
}

func (l *Lab) saveState() error {
	b, err := json.MarshalIndent(l.St, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("lab: save state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "state.json"))
}

// run runs a command and returns its combined output, with the command line in
// the error.
func run(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// nsRun runs argv inside node's namespace.
func (l *Lab) nsRun(ctx context.Context, node string, argv ...string) ([]byte, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", l.NS(node)}, argv...)...)
}

// Exec runs argv in node's namespace with node's /etc (so swanctl finds its
// charon) and returns the combined output.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: exec: no command")
	}
	if !slices.Contains(Nodes, node) {
		return nil, fmt.Errorf("lab: unknown node %q (want mn, r, gw or lan)", node)
	}
	return l.nsRun(ctx, node, argv...)
}

// ExecCmd returns an *exec.Cmd that runs argv in node's namespace, for callers
// that stream output or run in the background.
func (l *Lab) ExecCmd(ctx context.Context, node string, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.NS(node)}, argv...)...)
}

func existingNamespaces() (map[string]bool, error) {
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m, nil
}

// Up builds the lab, starts both charons and (unless NoSA) establishes the SA.
// Leftovers of a lab with the same name are removed first, so Up is idempotent
// after a crashed run. On failure everything it made is removed again.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if o.Name == "" {
		o.Name = "mlab"
	}
	if err := validName(o.Name); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: must run as root (network namespaces)")
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	if o.Controller && o.ControllerConf == "" {
		return nil, errors.New("lab: controller mode needs the charon settings snippet")
	}
	if err := Down(ctx, o.Name); err != nil {
		return nil, fmt.Errorf("lab: remove leftovers: %w", err)
	}
	l = newLab(o.Name, o.Log)
	dpd := o.DPD
	if dpd == 0 {
		dpd = 30 * time.Second
	}
	if o.Conns < 1 {
		o.Conns = 1
	}
	l.St = State{NATB: o.NATB, DPD: dpd.String(), Controller: o.Controller, Impair: map[string]Impairment{}, Pids: map[string]int{},
		Extra: o.ExtraConns, Conns: o.Conns, LAN: o.LAN}
	defer func() {
		if err != nil {
			_ = Down(context.Background(), o.Name)
		}
	}()
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := l.saveState(); err != nil {
		return nil, err
	}
	l.logf("lab %s: building namespaces", l.Name)
	if err := l.buildTopology(ctx); err != nil {
		return nil, err
	}
	if err := l.writeFirewall(ctx); err != nil {
		return nil, err
	}
	if err := l.writeConfigs(o); err != nil {
		return nil, err
	}
	for _, node := range []string{"gw", "mn"} {
		if err := l.StartCharon(ctx, node); err != nil {
			return nil, err
		}
	}
	if o.Controller && o.StartController != nil {
		pid, err := o.StartController(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("lab: start mobiked: %w", err)
		}
		l.St.Pids["mobiked"] = pid
		if err := l.saveState(); err != nil {
			return nil, err
		}
	}
	if !o.NoSA {
		for k := 1; k <= o.Conns; k++ {
			l.logf("lab %s: initiating SA %s", l.Name, ConnName(k))
			if err := l.InitiateConn(ctx, ConnName(k)); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Initiate establishes mn's connection "lab" and waits until it is up.
func (l *Lab) Initiate(ctx context.Context) error { return l.InitiateConn(ctx, "lab") }

// InitiateConn establishes one of mn's tunnel connections (ConnName) and
// waits until it is up.
func (l *Lab) InitiateConn(ctx context.Context, conn string) error {
	var last error
	for try := 0; try < 3; try++ {
		out, err := l.nsRun(ctx, "mn", "swanctl", "--initiate", "--ike", conn, "--child", conn, "--timeout", "10")
		if err == nil {
			return nil
		}
		last = fmt.Errorf("lab: initiate %s: %w (%s)", conn, err, lastLines(string(out), 3))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return last
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// link describes one veth between two nodes.
type link struct{ a, aIf, b, bIf string }

var links = []link{
	{"mn", "eth0", "r", "eth0"},
	{"mn", "eth1", "r", "eth1"},
	{"r", "eth2", "gw", "eth0"},
	{"r", "eth3", "gw", "eth1"},
	{"mn", "eth2", "lan", "eth0"}, // only with Options.LAN
}

func (l *Lab) buildTopology(ctx context.Context) error {
	for _, n := range l.nodes() {
		if _, err := run(ctx, "ip", "netns", "add", l.NS(n)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join("/etc/netns", l.NS(n)), 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	cmds := map[string][]string{}
	add := func(node, c string) { cmds[node] = append(cmds[node], c) }
	for _, n := range l.nodes() {
		// No DAD: addresses must be usable at once in the lab. Set before
		// the links exist, so that they inherit it (link-local addresses
		// included: a tentative link-local address delays neighbour
		// discovery, and with it the first IPv6 packets, by 1–2 s).
		if _, err := l.nsRun(ctx, n, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"); err != nil {
			return err
		}
	}
	for _, lk := range links {
		if !slices.Contains(l.nodes(), lk.b) {
			continue
		}
		if _, err := run(ctx, "ip", "-n", l.NS(lk.a), "link", "add", lk.aIf, "type", "veth", "peer", "name", lk.bIf, "netns", l.NS(lk.b)); err != nil {
			return err
		}
	}
	for _, sys := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if _, err := l.nsRun(ctx, "r", "sysctl", "-q", "-w", sys); err != nil {
			return err
		}
	}
	// mn
	add("mn", "link set lo up")
	add("mn", "addr add 10.1.0.2/24 dev eth0")
	add("mn", "addr add fd00:1::2/64 dev eth0 nodad")
	add("mn", "addr add 10.2.0.2/24 dev eth1")
	add("mn", "addr add fd00:2::2/64 dev eth1 nodad")
	add("mn", "link set eth0 up")
	add("mn", "link set eth1 up")
	add("mn", "route add default via 10.1.0.1 dev eth0 metric 100")
	add("mn", "route add default via 10.2.0.1 dev eth1 metric 200")
	add("mn", "-6 route add default via fd00:1::1 dev eth0 metric 100")
	add("mn", "-6 route add default via fd00:2::1 dev eth1 metric 200")
	if l.St.LAN {
		// The LAN: a connected route in mn's main table, more specific than
		// the default; nothing of mobiked's may take traffic away from it.
		add("mn", "addr add "+LANGateway.String()+"/24 dev eth2")
		add("mn", "link set eth2 up")
		add("lan", "link set lo up")
		add("lan", "addr add "+LANHost.String()+"/24 dev eth0")
		add("lan", "link set eth0 up")
		add("lan", "route add default via "+LANGateway.String())
	}
	// r
	add("r", "link set lo up")
	for i := 0; i < 4; i++ {
		add("r", fmt.Sprintf("addr add 10.%d.0.1/24 dev eth%d", i+1, i))
		add("r", fmt.Sprintf("addr add fd00:%d::1/64 dev eth%d nodad", i+1, i))
		add("r", fmt.Sprintf("link set eth%d up", i))
	}
	// gw: two addresses on two links, each answering through its own link.
	add("gw", "link set lo up")
	add("gw", "addr add 10.9.0.1/32 dev lo")
	add("gw", "addr add 10.3.0.2/24 dev eth0")
	add("gw", "addr add fd00:3::2/64 dev eth0 nodad")
	add("gw", "addr add 10.4.0.2/24 dev eth1")
	add("gw", "addr add fd00:4::2/64 dev eth1 nodad")
	add("gw", "link set eth0 up")
	add("gw", "link set eth1 up")
	add("gw", "route add default via 10.3.0.1 dev eth0 metric 100")
	add("gw", "-6 route add default via fd00:3::1 dev eth0 metric 100")
	add("gw", "route add default via 10.3.0.1 dev eth0 table 101")
	add("gw", "route add default via 10.4.0.1 dev eth1 table 102")
	add("gw", "-6 route add default via fd00:3::1 dev eth0 table 101")
	add("gw", "-6 route add default via fd00:4::1 dev eth1 table 102")
	add("gw", "rule add from 10.3.0.2 lookup 101 pref 1001")
	add("gw", "rule add from 10.4.0.2 lookup 102 pref 1002")
	add("gw", "-6 rule add from fd00:3::2 lookup 101 pref 1001")
	add("gw", "-6 rule add from fd00:4::2 lookup 102 pref 1002")
	// ip -batch takes no per-line options: IPv6 lines go to a second batch
	// run with -6.
	for _, n := range l.nodes() {
		var v4, v6 []string
		for _, c := range cmds[n] {
			if rest, ok := strings.CutPrefix(c, "-6 "); ok {
				v6 = append(v6, rest)
			} else {
				v4 = append(v4, c)
			}
		}
		for _, b := range []struct {
			suffix string
			lines  []string
			opts   []string
		}{{"", v4, nil}, {"6", v6, []string{"-6"}}} {
			if len(b.lines) == 0 {
				continue
			}
			f := filepath.Join(l.Dir, n+".ipbatch"+b.suffix)
			if err := os.WriteFile(f, []byte(strings.Join(b.lines, "\n")+"\n"), 0o600); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
			argv := append(append([]string{"ip"}, b.opts...), "-n", l.NS(n), "-batch", f)
			if _, err := run(ctx, argv...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Down removes the lab named name: its processes (by recorded pid, then any
// pid still inside its namespaces), namespaces and files. It succeeds when
// nothing is there.
func Down(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	l := newLab(name, nil)
	var errs []error
	if b, err := os.ReadFile(filepath.Join(l.Dir, "state.json")); err == nil {
		_ = json.Unmarshal(b, &l.St)
	}
	// mobiked first, so that it does not react to charon going away.
	keys := make([]string, 0, len(l.St.Pids))
	for k := range l.St.Pids {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if a == "mobiked" {
			return -1
		}
		if b == "mobiked" {
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		stopPid(l.St.Pids[k], inNamespaces(name))
	}
	nss, err := existingNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range Nodes {
		ns := l.NS(n)
		if !nss[ns] {
			continue
		}
		// Anything still running in our namespace was started by a lab run.
		if out, err := run(ctx, "ip", "netns", "pids", ns); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					stopPid(pid, nil)
				}
			}
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range Nodes {
		if err := os.RemoveAll(filepath.Join("/etc/netns", l.NS(n))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close removes the lab.
func (l *Lab) Close(ctx context.Context) error { return Down(ctx, l.Name) }

// inNamespaces returns a check that a pid runs inside one of the lab's
// namespaces (so a recycled pid of an unrelated process is never killed).
func inNamespaces(name string) func(pid int) bool {
	return func(pid int) bool {
		for _, n := range Nodes {
			out, err := run(context.Background(), "ip", "netns", "identify", strconv.Itoa(pid))
			if err != nil {
				return false
			}
			if strings.TrimSpace(string(out)) == name+"-"+n {
				return true
			}
		}
		return false
	}
}

// stopPid sends SIGTERM, waits up to 3 s, then SIGKILL.
func stopPid(pid int, check func(int) bool) {
	if pid <= 1 {
		return
	}
	if syscall.Kill(pid, 0) != nil {
		return
	}
	if check != nil && !check(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the ")" of the command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
