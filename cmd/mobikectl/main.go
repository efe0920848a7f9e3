// Command mobikectl is mobiked's operator CLI: it talks to the daemon's
// control socket and prints human tables or JSON.
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
	"text/tabwriter"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/internal/safefile"
	"github.com/mobiked/mobiked/policy"
)

const usage = `usage: mobikectl [--socket PATH] [--json] COMMAND

commands:
  status                          each SA: connection, current pair, uplink, why
  paths                           every local×remote pair: state, RTT, loss, NAT, probe method
  explain CONN                    the ranking of CONN's candidate pairs with a reason for each
  prefer CONN UPLINK [--for 1h]   pin CONN to UPLINK (operator override)
  unprefer CONN                   remove the override
  events                          follow the decision trace
  check-config FILE               check a config file (exit 2 on problems)
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mobikectl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	socket := fs.String("socket", control.DefaultSocket, "mobiked's control socket")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := control.NewClient(*socket)
	cmd, rest := rest[0], rest[1:]
	err := func() error {
		switch cmd {
		case "status":
			if len(rest) != 0 {
				return usageErr("status takes no arguments")
			}
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, st)
			}
			if !st.CharonUp {
				fmt.Fprintln(stdout, "charon: DOWN (VICI not reachable)")
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONN\tID\tSTATE\tLOCAL\tREMOTE\tUPLINK\tWHY")
			for _, s := range st.SAs {
				why := s.Why
				if s.Steering != "" {
					why = fmt.Sprintf("moving to %s since %s; %s", s.Steering, s.Since.Format(time.TimeOnly), why)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Conn, s.ID, s.State, s.Local, s.Remote, dash(s.Uplink), why)
			}
			return tw.Flush()
		case "paths":
			if len(rest) != 0 {
				return usageErr("paths takes no arguments")
			}
			ps, err := c.Paths(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, ps)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LOCAL\tREMOTE\tUPLINK\tSTATE\tRTT\tLOSS\tNAT\tMETHOD\tPROFILE\tSINCE\tREASON")
			for _, p := range ps {
				act := ""
				if p.Active {
					act = "*"
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%.1fms\t%.0f%%\t%s\t%s\t%s\t%s\t%s\n", act, p.Local, p.Remote, p.Uplink, p.State,
					p.RTTms, p.Loss*100, p.NAT, p.Method, p.Profile, p.Since.Format(time.TimeOnly), p.Reason)
			}
			return tw.Flush()
		case "explain":
			if len(rest) != 1 {
				return usageErr("usage: explain CONN")
			}
			e, err := c.Explain(ctx, rest[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, e)
			}
			fmt.Fprintf(stdout, "connection %s: current %s\n", e.Conn, dash(e.Current))
			fmt.Fprintf(stdout, "peers: %s\n", strings.Join(e.Peers, ", "))
			if e.Prefer != "" {
				fmt.Fprintf(stdout, "operator prefers uplink %s until %s\n", e.Prefer, e.PreferUntil.Format(time.DateTime))
			}
			fmt.Fprintf(stdout, "decision: %s\n", dash(e.Decision))
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RANK\tLOCAL\tREMOTE\tUPLINK\tSTATE\tELIGIBLE\tSLA\tRTT\tLOSS\tREASON")
			for _, cd := range e.Candidates {
				cur := ""
				if cd.Current {
					cur = " (current)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%v\t%v\t%.1fms\t%.0f%%\t%s%s\n", cd.Rank, cd.Local, cd.Remote, cd.Uplink, cd.State,
					cd.Eligible, cd.SLAMet, cd.RTTms, cd.Loss*100, cd.Reason, cur)
			}
			return tw.Flush()
		case "prefer":
			pfs := flag.NewFlagSet("prefer", flag.ContinueOnError)
			pfs.SetOutput(stderr)
			dur := pfs.Duration("for", 0, "how long (default: until unprefer)")
			var pos []string
			for len(rest) > 0 {
				if err := pfs.Parse(rest); err != nil {
					return usageErr(err.Error())
				}
				rest = pfs.Args()
				if len(rest) > 0 {
					pos = append(pos, rest[0])
					rest = rest[1:]
				}
			}
			if len(pos) != 2 {
				return usageErr("usage: prefer CONN UPLINK [--for 1h]")
			}
			if *dur < 0 {
				return usageErr("--for must be positive")
			}
			if err := c.Prefer(ctx, control.PreferRequest{Conn: pos[0], Uplink: pos[1], For: *dur}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: preferring uplink %s\n", pos[0], pos[1])
			return nil
		case "unprefer":
			if len(rest) != 1 {
				return usageErr("usage: unprefer CONN")
			}
			if err := c.Prefer(ctx, control.PreferRequest{Conn: rest[0]}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: override removed\n", rest[0])
			return nil
		case "events":
			return c.Events(ctx, func(ev control.Event) {
				if *asJSON {
					_ = json.NewEncoder(stdout).Encode(ev)
					return
				}
				fmt.Fprintf(stdout, "%s %-20s %s\n", ev.At.Format("15:04:05.000"), ev.Kind, ev.Text)
			})
		case "check-config":
			if len(rest) != 1 {
				return usageErr("usage: check-config FILE")
			}
			data, err := safefile.ReadRegular(rest[0], policy.MaxConfigSize)
			if err != nil {
				return configErr{err}
			}
			if _, err := policy.Load(rest[0], data); err != nil {
				return configErr{err}
			}
			fmt.Fprintf(stdout, "%s: ok\n", rest[0])
			return nil
		}
		return usageErr(fmt.Sprintf("unknown command %q", cmd))
	}()
	if err == nil {
		return 0
	}
	var ue usageErr
	var ce configErr
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mobikectl: %s\n", string(ue))
		return 2
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "%v\n", ce.err)
		return 2
	}
	fmt.Fprintf(stderr, "mobikectl %s: %v\n", cmd, err)
	return 1
}

type usageErr string

func (e usageErr) Error() string { return string(e) }

type configErr struct{ err error }

func (e configErr) Error() string { return e.err.Error() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
