// Command mobike-lab builds and drives mobiked's lab: real strongSwan charon in
// network namespaces (a multihomed client, a router, a multihomed gateway),
// with impairments, tunnel pings, a demo and benchmarks. See package lab.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

const usage = `usage: mobike-lab COMMAND [flags]

commands:
  up [--nat-b] [--dpd 5s] [--controller [--charon-defaults] [--mobiked BIN] [--mobiked-config FILE]] [--no-sa]
     [--conns N] [--lan]                             build the lab, start charons, establish the SAs
  down                                               remove everything the lab made
  status [--json]                                    namespaces, charons, SAs
  impair --path a|b|gw1|gw2 (--blackhole | --drop-ike | --loss PCT | --delay D [--jitter J] | --link-down |
         --link-up | --nat on|off | --restore)       loss and delay apply to each direction
  ping [--conn labK] [--count N] [--interval 10ms]   tunnel ping from mn's virtual IP (of conn labK) to 10.9.0.1
  exec NODE -- CMD...                                run CMD in NAME-NODE (mn, r, gw, lan) with its strongswan.conf
  demo                                               show charon alone against a silent blackhole
  bench [--runs N] [--scenario NAME ...] [--json FILE] [--svg DIR] [--sas N] [--modes charon,mobiked]
        [--mobiked-config FILE] [--logs DIR]         measure charon alone vs charon + mobiked (docs/BENCHMARKS.md)
  conform [--json FILE]                              run mobike-conform from mn against the gateway (docs/conformance.md)
every command accepts --name NAME (default mlab)
`

func main() {
	lab.ServeDelayLineIfAsked() // the lab re-executes this binary as a path's delay line
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "up":
		err = cmdUp(ctx, rest, stdout, stderr)
	case "down":
		err = cmdDown(ctx, rest, stdout, stderr)
	case "status":
		err = cmdStatus(ctx, rest, stdout, stderr)
	case "impair":
		err = cmdImpair(ctx, rest, stdout, stderr)
	case "ping":
		err = cmdPing(ctx, rest, stdout, stderr)
	case "exec":
		err = cmdExec(ctx, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr)
	case "conform":
		err = cmdConform(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "mobike-lab: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "mobike-lab %s: %v\n", cmd, err)
			return 2
		}
		fmt.Fprintf(stderr, "mobike-lab %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("mobike-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.String("name", "mlab", "lab name (prefix of its namespaces)")
	return fs, n
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("up", stderr)
	natB := fs.Bool("nat-b", false, "masquerade uplink b in the router")
	dpd := fs.Duration("dpd", 30*time.Second, "charon dpd_delay on mn")
	ctrl := fs.Bool("controller", false, "give charon mobiked's settings and run mobiked in mn")
	mcfg := fs.String("mobiked-config", "", "mobiked's policy file (with --controller; default: the lab's)")
	noSA := fs.Bool("no-sa", false, "do not establish the SA")
	defaults := fs.Bool("charon-defaults", false, "with --controller: run mn's charon without mobiked's settings (mobikectl doctor must name them)")
	bin := fs.String("mobiked", "", "with --controller: the mobiked binary to run (default: next to mobike-lab, then $PATH), e.g. a packaged /usr/sbin/mobiked")
	conns := fs.Int("conns", 1, "connections from mn to the gateway: lab, lab2..labN, each with its own virtual IP")
	lan := fs.Bool("lan", false, "add a LAN namespace (NAME-lan, "+lab.LANHost.String()+") behind mn's eth2")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*defaults || *bin != "" || *mcfg != "") && !*ctrl {
		return usageError{errors.New("--charon-defaults, --mobiked and --mobiked-config need --controller")}
	}
	if *conns < 1 || *conns > 50 {
		return usageError{fmt.Errorf("--conns %d: want 1..50", *conns)}
	}
	o := lab.Options{Name: *name, NATB: *natB, DPD: *dpd, NoSA: *noSA, Conns: *conns, LAN: *lan, Log: stdout}
	if *ctrl {
		config := ""
		if *mcfg != "" {
			b, err := os.ReadFile(*mcfg)
			if err != nil {
				return fmt.Errorf("--mobiked-config: %w", err)
			}
			config = string(b)
		}
		o.Controller = true
		o.CharonDefaults = *defaults
		o.ControllerConf = deploy.MobikedConf
		o.StartController = func(ctx context.Context, l *lab.Lab) (int, error) {
			b := *bin
			if b == "" {
				var err error
				if b, err = mobikedBin(); err != nil {
					return 0, err
				}
			}
			return l.StartMobiked(ctx, b, config)
		}
	}
	l, err := lab.Up(ctx, o)
	if err != nil {
		return err
	}
	if !*noSA {
		for k := 1; k <= *conns; k++ {
			sa, err := l.SAOf(ctx, lab.ConnName(k))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "lab %s up: SA %s %s %s <-> %s %v\n", l.Name, sa.Conn, sa.State, sa.LocalHost, sa.RemoteHost, sa.VIPs)
		}
	} else {
		fmt.Fprintf(stdout, "lab %s up (no SA)\n", l.Name)
	}
	return nil
}

func cmdDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("down", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := lab.Down(ctx, *name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s down\n", *name)
	return nil
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := lab.Open(*name)
	if err != nil {
		return err
	}
	st, err := l.Status(ctx)
	if err != nil && st == nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(st); e != nil {
			return e
		}
		return err
	}
	fmt.Fprintf(stdout, "lab %s\n", st.Name)
	for _, n := range lab.Nodes {
		ns, ok := st.Nodes[n]
		if !ok {
			continue
		}
		fmt.Fprintf(stdout, "  %-10s exists=%-5v", ns.Namespace, ns.Exists)
		if n == "mn" || n == "gw" {
			fmt.Fprintf(stdout, " charon_pid=%d vici=%s", ns.CharonPID, ns.VICI)
		}
		fmt.Fprintln(stdout)
	}
	if st.MobikedPID > 0 {
		fmt.Fprintf(stdout, "  mobiked pid=%d\n", st.MobikedPID)
	}
	for p, s := range st.Impairments {
		fmt.Fprintf(stdout, "  impairment %s: %s\n", p, s)
	}
	for _, sa := range st.SAs {
		fmt.Fprintf(stdout, "  SA %s[%s] on %s: %s %s <-> %s initiator=%v\n", sa.Conn, sa.UniqueID, sa.Node, sa.State, sa.LocalHost, sa.RemoteHost, sa.Initiator)
	}
	return err
}

func cmdImpair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("impair", stderr)
	path := fs.String("path", "", "a, b (mn's uplinks), gw1, gw2 (the gateway's addresses)")
	bh := fs.Bool("blackhole", false, "silently drop both directions")
	dropIKE := fs.Bool("drop-ike", false, "drop UDP 500 and 4500 both ways (ICMP still answered)")
	loss := fs.Float64("loss", -1, "drop PCT % of packets in each direction (0.1 % steps)")
	delay := fs.Duration("delay", -1, "delay each direction by D (a user-space delay line in the router; 0 removes it)")
	jitter := fs.Duration("jitter", 0, "with --delay: spread each packet's delay uniformly by ± J")
	down := fs.Bool("link-down", false, "set the link down")
	up := fs.Bool("link-up", false, "set the link up")
	nat := fs.String("nat", "", "on|off: masquerade the uplink")
	restore := fs.Bool("restore", false, "remove impairments")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--path is required (a, b, gw1 or gw2)")}
	}
	var imps []lab.Impairment
	if *bh {
		imps = append(imps, lab.Impairment{Kind: lab.Blackhole})
	}
	if *dropIKE {
		imps = append(imps, lab.Impairment{Kind: lab.DropIKE})
	}
	if *loss >= 0 {
		imps = append(imps, lab.Impairment{Kind: lab.Loss, LossPct: *loss})
	}
	if *down {
		imps = append(imps, lab.Impairment{Kind: lab.LinkDown})
	}
	if *up {
		imps = append(imps, lab.Impairment{Kind: lab.LinkUp})
	}
	switch *nat {
	case "":
	case "on":
		imps = append(imps, lab.Impairment{Kind: lab.NATOn})
	case "off":
		imps = append(imps, lab.Impairment{Kind: lab.NATOff})
	default:
		return usageError{fmt.Errorf("--nat wants on or off, not %q", *nat)}
	}
	if *restore {
		imps = append(imps, lab.Impairment{Kind: lab.Restore})
	}
	if *delay >= 0 {
		imps = append(imps, lab.Impairment{})
	}
	if *jitter != 0 && *delay < 0 {
		return usageError{errors.New("--jitter needs --delay")}
	}
	if len(imps) != 1 {
		return usageError{errors.New("give exactly one of --blackhole, --drop-ike, --loss, --delay, --link-down, --link-up, --nat, --restore")}
	}
	if *delay >= 0 && (*jitter < 0 || *jitter > *delay || *delay+*jitter > lab.MaxDelay) {
		return usageError{fmt.Errorf("--delay %s --jitter %s: want 0 ≤ jitter ≤ delay and delay + jitter ≤ %s", *delay, *jitter, lab.MaxDelay)}
	}
	valid := false
	for _, p := range lab.Paths {
		valid = valid || p == *path
	}
	if !valid {
		return usageError{fmt.Errorf("unknown path %q (want a, b, gw1 or gw2)", *path)}
	}
	l, err := lab.Open(*name)
	if err != nil {
		return err
	}
	if *delay >= 0 {
		if err := l.SetDelay(ctx, *path, *delay, *jitter); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "path %s: delay %s ± %s each way\n", *path, *delay, *jitter)
		return nil
	}
	if err := l.Impair(ctx, *path, imps[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "path %s: %s\n", *path, imps[0].Kind)
	return nil
}

func cmdPing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("ping", stderr)
	count := fs.Int("count", 100, "packets to send")
	interval := fs.Duration("interval", 10*time.Millisecond, "interval between packets")
	conn := fs.String("conn", "lab", "the connection whose tunnel to ping through (lab, lab2, ...)")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := lab.Open(*name)
	if err != nil {
		return err
	}
	res, err := l.PingConn(ctx, *conn, *count, *interval)
	fmt.Fprintf(stdout, "sent %d received %d longest gap %.3fs\n", res.Sent, res.Received, res.LongestGap.Seconds())
	return err
}

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("exec", stderr)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return usageError{errors.New("usage: exec NODE -- CMD...")}
	}
	node := rest[0]
	rest = rest[1:]
	if rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return usageError{errors.New("usage: exec NODE -- CMD...")}
	}
	switch node {
	case "mn", "r", "gw", "lan":
	default:
		return usageError{fmt.Errorf("unknown node %q (want mn, r, gw or lan)", node)}
	}
	l, err := lab.Open(*name)
	if err != nil {
		return err
	}
	c := l.ExecCmd(ctx, node, rest...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(rest, " "), err)
	}
	return nil
}
