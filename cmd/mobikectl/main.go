// Command mobikectl is mobiked's operator CLI: it talks to the daemon's
// control socket and prints human tables or JSON (--json). Flags go anywhere
// on the line; `mobikectl help CMD` and `mobikectl completion SHELL` work as
// in other cobra tools.
//
// Exit status: 0 ok, 1 a failure (mobiked not reachable, a doctor check
// failed), 2 a usage or configuration error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mobiked/mobiked/cmd/internal/buildinfo"
	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/internal/safefile"
	"github.com/mobiked/mobiked/policy"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// usageErr is a bad command line (exit 2).
type usageErr struct{ error }

// configErr is a broken config file (exit 2); its text is the problem list.
type configErr struct{ error }

// failedErr means the command ran and found a problem (exit 1); it has
// printed what it found already.
type failedErr struct{ error }

type cli struct {
	socket string
	asJSON bool
	stdout io.Writer
}

func (c *cli) client() *control.Client { return control.NewClient(c.socket) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ue usageErr
	var ce configErr
	var fe failedErr
	switch {
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, ce.Error())
		return 2
	case errors.As(err, &fe):
		fmt.Fprintf(stderr, "mobikectl %s: %v\n", cmd.Name(), fe.error)
		return 1
	case errors.As(err, &ue), isCobraUsage(err):
		fmt.Fprintf(stderr, "mobikectl: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return 2
	}
	fmt.Fprintf(stderr, "mobikectl %s: %v\n", cmd.Name(), err)
	return 1
}

// isCobraUsage recognises cobra's own command-line errors (unknown command
// or flag, wrong argument count).
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires exactly", "bad flag syntax"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	c := &cli{stdout: stdout}
	root := &cobra.Command{
		Use:   "mobikectl",
		Short: "Operator CLI of mobiked, the MOBIKE path controller for strongSwan",
		Long: `mobikectl talks to mobiked over its control socket (` + control.DefaultSocket + `).

Exit status: 0 ok, 1 a failure (mobiked not reachable, a doctor check failed),
2 a usage or configuration error.`,
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bare `mobikectl` prints the help and fails as a usage error.
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usageErr{errors.New("no command given")}
		},
		Args: cobra.NoArgs,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("mobikectl {{.Version}}\n")
	root.PersistentFlags().StringVar(&c.socket, "socket", control.DefaultSocket, "mobiked's control socket")
	root.PersistentFlags().BoolVar(&c.asJSON, "json", false, "print JSON")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr{err} })
	root.AddCommand(c.statusCmd(), c.pathsCmd(), c.explainCmd(), c.preferCmd(), c.unpreferCmd(), c.eventsCmd(),
		c.doctorCmd(), c.checkConfigCmd(), versionCmd())
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mobikectl's version and VCS revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "mobikectl %s\n", buildinfo.Read())
			return nil
		},
	}
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Each SA: connection, current pair, uplink, why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := c.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if c.asJSON {
				return printJSON(c.stdout, st)
			}
			if !st.CharonUp {
				fmt.Fprintln(c.stdout, "charon: DOWN (VICI not reachable)")
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONN\tID\tSTATE\tLOCAL\tREMOTE\tUPLINK\tWHY")
			for _, s := range st.SAs {
				why := s.Why
				if s.Steering != "" {
					why = fmt.Sprintf("moving to %s since %s; %s", s.Steering, s.Since.Format(time.TimeOnly), why)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Conn, s.ID, s.State, s.Local, s.Remote, dash(s.Uplink), why)
			}
			return tw.Flush()
		},
	}
}

func (c *cli) pathsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "paths",
		Short: "Every local×remote pair: state, RTT, loss, NAT, probe method",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := c.client().Paths(cmd.Context())
			if err != nil {
				return err
			}
			if c.asJSON {
				return printJSON(c.stdout, ps)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
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
		},
	}
}

func (c *cli) explainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "explain CONN",
		Short: "The ranking of CONN's candidate pairs with a reason for each",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := c.client().Explain(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if c.asJSON {
				return printJSON(c.stdout, e)
			}
			out := c.stdout
			fmt.Fprintf(out, "connection %s: current %s\n", e.Conn, dash(e.Current))
			fmt.Fprintf(out, "peers: %s\n", strings.Join(e.Peers, ", "))
			if e.Prefer != "" {
				fmt.Fprintf(out, "operator prefers uplink %s until %s\n", e.Prefer, e.PreferUntil.Format(time.DateTime))
			}
			fmt.Fprintf(out, "decision: %s\n", dash(e.Decision))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
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
		},
	}
}

func (c *cli) preferCmd() *cobra.Command {
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "prefer CONN UPLINK",
		Short: "Pin CONN to UPLINK (operator override), for --for or until unprefer",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dur < 0 {
				return usageErr{errors.New("--for must be positive")}
			}
			if err := c.client().Prefer(cmd.Context(), control.PreferRequest{Conn: args[0], Uplink: args[1], For: dur}); err != nil {
				return err
			}
			if c.asJSON {
				return printJSON(c.stdout, map[string]any{"conn": args[0], "uplink": args[1], "for": dur.String()})
			}
			fmt.Fprintf(c.stdout, "%s: preferring uplink %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "for", 0, "how long (default: until unprefer)")
	return cmd
}

func (c *cli) unpreferCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unprefer CONN",
		Short: "Remove the operator override of CONN",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.client().Prefer(cmd.Context(), control.PreferRequest{Conn: args[0]}); err != nil {
				return err
			}
			if c.asJSON {
				return printJSON(c.stdout, map[string]any{"conn": args[0], "uplink": ""})
			}
			fmt.Fprintf(c.stdout, "%s: override removed\n", args[0])
			return nil
		},
	}
}

func (c *cli) eventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Follow the decision trace (the last 100 lines first); --json prints one object a line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(c.stdout)
			return c.client().Events(cmd.Context(), func(ev control.Event) {
				if c.asJSON {
					_ = enc.Encode(ev)
					return
				}
				fmt.Fprintf(c.stdout, "%s %-20s %s\n", ev.At.Format("15:04:05.000"), ev.Kind, ev.Text)
			})
		},
	}
}

func (c *cli) doctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that this host is set up for mobiked (checks run inside mobiked)",
		Long: `doctor asks mobiked to check, from where it runs: charon's VICI socket, that charon
runs with mobiked's settings (prefer_best_path, kernel-netlink fwmark = !0x42 and
process_rules, and the rule "not fwmark 0x42 lookup 220" they give), which
connections mobiked can steer and why not, foreign rules and routes in mobiked's
priority band and tables, and the probe reachability of each peer address per
uplink. One line per check; exit status 1 when a check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := c.client().Doctor(cmd.Context())
			if err != nil {
				return err
			}
			if c.asJSON {
				if err := printJSON(c.stdout, d); err != nil {
					return err
				}
			} else {
				printDoctor(c.stdout, d)
			}
			if d.Failed() {
				n := 0
				for _, ch := range d.Checks {
					if ch.Status == control.CheckFail {
						n++
					}
				}
				return failedErr{fmt.Errorf("%d check(s) failed", n)}
			}
			return nil
		},
	}
}

func printDoctor(w io.Writer, d control.Doctor) {
	for _, ch := range d.Checks {
		fmt.Fprintf(w, "%-4s  %-22s %s\n", strings.ToUpper(string(ch.Status)), ch.Name, ch.Detail)
		if ch.Hint != "" && ch.Status != control.CheckOK {
			fmt.Fprintf(w, "      %-22s → %s\n", "", ch.Hint)
		}
	}
}

func (c *cli) checkConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Check a mobiked config file (exit 2 with every problem as file:line)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := safefile.ReadRegular(args[0], policy.MaxConfigSize)
			if err != nil {
				return configErr{err}
			}
			if _, err := policy.Load(args[0], data); err != nil {
				return configErr{err}
			}
			if c.asJSON {
				return printJSON(c.stdout, map[string]any{"file": args[0], "ok": true})
			}
			fmt.Fprintf(c.stdout, "%s: ok\n", args[0])
			return nil
		},
	}
}

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
