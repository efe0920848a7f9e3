package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

// cmdDemo shows the problem mobiked solves: with charon alone, a silently
// blackholed uplink kills the tunnel although the second uplink works.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("demo", stderr)
	wait := fs.Duration("wait", 30*time.Second, "how long to watch after the blackhole")
	if err := parse(fs, args); err != nil {
		return err
	}
	bin, binErr := mobikedBin()
	type mode struct {
		title string
		opts  lab.Options
	}
	modes := []mode{{"charon alone", lab.Options{Name: *name, DPD: 5 * time.Second, Log: stdout}}}
	if binErr == nil {
		modes = append(modes, mode{"charon + mobiked", lab.Options{Name: *name, DPD: 5 * time.Second, Log: stdout,
			Controller: true, ControllerConf: deploy.MobikedConf,
			StartController: func(ctx context.Context, l *lab.Lab) (int, error) { return l.StartMobiked(ctx, bin, "") }}})
	} else {
		fmt.Fprintf(stdout, "note: %v; showing charon alone only\n", binErr)
	}
	var summary []string
	for _, m := range modes {
		fmt.Fprintf(stdout, "\n== %s: silent blackhole of uplink a (DPD 5 s) ==\n", m.title)
		res, err := blackholeRun(ctx, m.opts, *wait, stdout)
		if err != nil {
			return fmt.Errorf("%s: %w", m.title, err)
		}
		printTimeline(stdout, res.ping, res.impairAt, 10*time.Millisecond)
		line := fmt.Sprintf("%-17s no recovery within %s", m.title+":", *wait)
		if res.recovered {
			line = fmt.Sprintf("%-17s tunnel recovered, outage %.2fs", m.title+":", res.outage.Seconds())
		}
		fmt.Fprintln(stdout, "result: "+line)
		summary = append(summary, line)
	}
	fmt.Fprintf(stdout, "\n== summary (silent blackhole of the active uplink, second uplink working) ==\n")
	for _, l := range summary {
		fmt.Fprintln(stdout, "  "+l)
	}
	return nil
}

type runResult struct {
	ping      lab.PingResult
	impairAt  time.Duration
	recovered bool
	outage    time.Duration
}

// blackholeRun brings a lab up, pings through the tunnel at 10 ms, blackholes
// uplink a after 3 s, watches for wait, and takes the lab down.
func blackholeRun(ctx context.Context, o lab.Options, wait time.Duration, stdout io.Writer) (runResult, error) {
	l, err := lab.Up(ctx, o)
	if err != nil {
		return runResult{}, err
	}
	defer func() {
		if err := l.Close(context.Background()); err != nil {
			fmt.Fprintf(stdout, "lab down: %v\n", err)
		}
	}()
	const interval = 10 * time.Millisecond
	lead := 3 * time.Second
	total := lead + wait
	count := int(total / interval)
	type pr struct {
		res lab.PingResult
		err error
	}
	done := make(chan pr, 1)
	go func() {
		r, err := l.Ping(ctx, count, interval)
		done <- pr{r, err}
	}()
	start := time.Now()
	select {
	case <-ctx.Done():
		return runResult{}, ctx.Err()
	case <-time.After(lead):
	}
	if err := l.Impair(ctx, "a", lab.Impairment{Kind: lab.Blackhole}); err != nil {
		return runResult{}, err
	}
	impairAt := time.Since(start)
	fmt.Fprintf(stdout, "blackholed uplink a at t=%.2fs; watching for %s\n", impairAt.Seconds(), wait)
	p := <-done
	if o.Controller {
		printDecisions(stdout, l.MobikedLog())
	}
	res := runResult{ping: p.res, impairAt: impairAt}
	// Recovered = replies came back after the impairment.
	var prev time.Duration
	for _, r := range p.res.Replies {
		if r > impairAt {
			if prev <= impairAt {
				res.outage = r - prev
			}
			res.recovered = true
			break
		}
		prev = r
	}
	return res, nil
}

// printTimeline prints one line per second: replies received out of expected.
func printTimeline(w io.Writer, p lab.PingResult, impairAt, interval time.Duration) {
	per := int(time.Second / interval)
	secs := int(p.Duration/time.Second) + 1
	buckets := make([]int, secs)
	for _, r := range p.Replies {
		if i := int(r / time.Second); i < secs {
			buckets[i]++
		}
	}
	fmt.Fprintf(w, "tunnel ping timeline (10 ms interval, replies per second):\n")
	for i := 0; i < secs; i++ {
		n := buckets[i]
		mark := " "
		if impairAt >= time.Duration(i)*time.Second && impairAt < time.Duration(i+1)*time.Second {
			mark = "X"
		}
		// Collapse a run of seconds without any reply into one line.
		j := i
		for n == 0 && mark == " " && j+1 < secs && buckets[j+1] == 0 {
			j++
		}
		if j > i {
			fmt.Fprintf(w, "  t=%3ds..%3ds  %-40s   0/%d  (no replies)\n", i, j, "", per)
			i = j
			continue
		}
		bar := strings.Repeat("#", (n*40+per-1)/per)
		fmt.Fprintf(w, "  t=%3ds %s %-40s %3d/%d\n", i, mark, bar, n, per)
	}
	fmt.Fprintf(w, "  (X = impairment; sent %d, received %d, longest gap %.2fs)\n", p.Sent, p.Received, p.LongestGap.Seconds())
}

// printDecisions shows mobiked's decisions of the run (its trace lines about
// pairs going down and SAs being steered and moved) from its log.
func printDecisions(w io.Writer, logPath string) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	fmt.Fprintln(w, "mobiked decisions:")
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "trace=") {
			continue
		}
		keep := false
		for _, k := range []string{"msg=SteerRequested", "msg=SteerConfirmed", "msg=SteerFailed", "msg=SAMoved", "-> down", "msg=NoPath"} {
			keep = keep || strings.Contains(line, k)
		}
		if !keep {
			continue
		}
		ts := ""
		if i := strings.Index(line, "time="); i >= 0 && len(line) > i+28 {
			ts = line[i+16 : i+28]
		}
		tr := line[strings.Index(line, "trace=")+6:]
		fmt.Fprintf(w, "  %s %s\n", ts, strings.Trim(tr, `"`))
	}
}
