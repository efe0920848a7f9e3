package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
)

// The mobiked binary of the lab tests is built once per package run, into
// labBinDir (removed by TestMain).
var (
	labBinOnce sync.Once
	labBinDir  string
	labBin     string
	labBinErr  error
	labBinOut  []byte
)

func sharedMobiked(t *testing.T) string {
	t.Helper()
	labBinOnce.Do(func() {
		labBinDir, labBinErr = os.MkdirTemp("", "mobiked-lab-bin-")
		if labBinErr != nil {
			return
		}
		labBin = filepath.Join(labBinDir, "mobiked")
		labBinOut, labBinErr = exec.Command("go", "build", "-o", labBin, ".").CombinedOutput()
	})
	if labBinErr != nil {
		t.Fatalf("build mobiked: %v\n%s", labBinErr, labBinOut)
	}
	return labBin
}

// labRig is one lab with mobiked running in mn.
type labRig struct {
	t   *testing.T
	l   *lab.Lab
	c   *control.Client
	bin string
	cfg string // mobiked config ("" = lab.LabMobikedConfig)
	// mark is the size of mn's charon log at the last impairment: what
	// charon logged since is what a tunnel check may blame.
	mark int64
}

// upRig brings up lab name with mobiked running config (empty = the lab's
// default) and removes it when the test ends, also on failure (unless
// DLAB_KEEP is set, for debugging: then `mobike-lab down --name NAME`).
func upRig(t *testing.T, ctx context.Context, name, config string, o lab.Options) *labRig {
	t.Helper()
	r := &labRig{t: t, bin: sharedMobiked(t), cfg: config}
	o.Name = name
	o.Controller = true
	o.ControllerConf = deploy.MobikedConf
	o.StartController = func(ctx context.Context, l *lab.Lab) (int, error) { return l.StartMobiked(ctx, r.bin, config) }
	if o.DPD == 0 {
		o.DPD = 5 * time.Second
	}
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	r.l = l
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := exec.Command("tail", "-n", "80", l.MobikedLog()).CombinedOutput(); err == nil {
				t.Logf("mobiked log:\n%s", out)
			}
			keepLogs(t, l)
		}
		if os.Getenv("DLAB_KEEP") == "" {
			_ = lab.Down(context.Background(), name)
		}
	})
	r.c = control.NewClient(l.MobikedSocket())
	return r
}

// failedLogs is where a failed lab test's logs are kept (the lab itself is
// removed): the newest failure of each lab name.
const failedLogs = "/var/tmp/mobike-lab-failed"

// keepLogs copies the logs of a failed test's lab (mobiked's, both
// charons') to failedLogs/NAME and names them in the test's output.
func keepLogs(t *testing.T, l *lab.Lab) {
	dst := filepath.Join(failedLogs, filepath.Base(l.Dir))
	if err := os.RemoveAll(dst); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	logs, _ := filepath.Glob(filepath.Join(l.Dir, "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644)
		}
		if err != nil {
			t.Logf("keep logs: %v", err)
		}
	}
	t.Logf("logs of the lab kept in %s", dst)
}

// adoptedRig runs a parallel lab test's usual start: a rig with mobiked
// (config; "" = the lab's) that has adopted the SA on uplink a and finds all
// four IPv4 pairs operational, and a context that ends after two minutes
// (or with the test).
func adoptedRig(t *testing.T, name, config string) (context.Context, *labRig) {
	t.Helper()
	lab.RequireRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := upRig(t, ctx, name, config, lab.Options{})
	r.row(ctx, 10*time.Second, "adopt SA on a", onLocal(mnAddrA))
	r.operational(ctx, 10*time.Second, 4)
	return ctx, r
}

// row polls mobiked's status until the lab SA satisfies ok.
func (r *labRig) row(ctx context.Context, timeout time.Duration, what string, ok func(control.SARow) bool) control.SARow {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last control.Status
	for time.Now().Before(deadline) {
		if st, err := r.c.Status(ctx); err == nil {
			last = st
			for _, row := range st.SAs {
				if row.Conn == "lab" && ok(row) {
					return row
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("%s: not within %s; last status %+v", what, timeout, last)
	return control.SARow{}
}

// sa waits until charon in mn reports an established SA satisfying ok.
func (r *labRig) sa(ctx context.Context, timeout time.Duration, what string, ok func(lab.SAInfo) bool) lab.SAInfo {
	r.t.Helper()
	s, err := r.l.WaitSA(ctx, timeout, func(s lab.SAInfo) bool { return s.State == "ESTABLISHED" && ok(s) })
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	return s
}

// operational waits until at least n pairs are operational.
func (r *labRig) operational(ctx context.Context, timeout time.Duration, n int) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []control.PathRow
	for time.Now().Before(deadline) {
		ps, err := r.c.Paths(ctx)
		if err == nil {
			last = ps
			ok := 0
			for _, p := range ps {
				if p.State == "operational" {
					ok++
				}
			}
			if ok >= n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("fewer than %d operational pairs after %s: %+v", n, timeout, last)
}

func (r *labRig) impair(ctx context.Context, path string, imp lab.Impairment) {
	r.t.Helper()
	if fi, err := os.Stat(r.l.CharonLog("mn")); err == nil {
		r.mark = fi.Size()
	}
	if err := r.l.Impair(ctx, path, imp); err != nil {
		r.t.Fatal(err)
	}
}

// pingOK asserts that the tunnel carries pings (at least 90 % of 30).
func (r *labRig) pingOK(ctx context.Context, what string) lab.PingResult {
	r.t.Helper()
	return r.tunnelOK(ctx, what, func() (lab.PingResult, error) { return r.l.Ping(ctx, 30, 10*time.Millisecond) })
}

// connPingOK is pingOK through the tunnel of connection conn.
func (r *labRig) connPingOK(ctx context.Context, conn, what string) lab.PingResult {
	r.t.Helper()
	return r.tunnelOK(ctx, conn+" "+what, func() (lab.PingResult, error) { return r.l.PingConn(ctx, conn, 30, 10*time.Millisecond) })
}

// collisionGrace bounds how long a tunnel check waits for charon to recover
// from a CHILD_SA rekey collision.
const collisionGrace = 30 * time.Second

// tunnelOK asserts that ping (30 pings) gets at least 90 % of its replies.
// One exception, known and not mobiked's: with kernel-libipsec both charons
// rekey the CHILD_SA after a MOBIKE move, and when the rekeys cross, charon
// 5.9.8 may install only half of the survivor (strongSwan bug #1896; the
// tunnel stays dead until the next rekey or DPD). A failed check is retried
// for up to collisionGrace only when mn's charon logged such a collision
// since the last impairment; any other silence fails at once.
func (r *labRig) tunnelOK(ctx context.Context, what string, ping func() (lab.PingResult, error)) lab.PingResult {
	r.t.Helper()
	ok := func(res lab.PingResult, err error) bool {
		return err == nil && res.Sent > 0 && res.Received >= res.Sent*9/10
	}
	res, err := ping()
	if ok(res, err) {
		return res
	}
	first := time.Now()
	coll := ""
	if r.mark > 0 { // only after an impairment made through r.impair
		coll = r.collisionSince(r.mark)
	}
	if coll == "" {
		r.t.Fatalf("tunnel ping %s: %+v %v", what, res, err)
	}
	r.t.Logf("tunnel ping %s failed (%d/%d) after charon logged %q (strongSwan #1896 under kernel-libipsec); waiting up to %s for charon",
		what, res.Received, res.Sent, coll, collisionGrace)
	for time.Since(first) < collisionGrace && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		if res, err = ping(); ok(res, err) {
			r.t.Logf("tunnel ping %s: answers again %.1fs after the first failed check", what, time.Since(first).Seconds())
			return res
		}
	}
	r.t.Fatalf("tunnel ping %s: still failing %.1fs after a CHILD_SA rekey collision (context: %v): %+v %v",
		what, time.Since(first).Seconds(), ctx.Err(), res, err)
	return res
}

// collisionSince returns the first line mn's charon logged after offset
// about a CHILD_SA rekey collision ("" if none).
func (r *labRig) collisionSince(offset int64) string {
	b, err := os.ReadFile(r.l.CharonLog("mn"))
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		if strings.Contains(line, "collision") && strings.Contains(line, "CHILD") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// restartMobiked stops mobiked and starts it again with the same config.
func (r *labRig) restartMobiked(ctx context.Context) {
	r.t.Helper()
	if err := r.l.StopMobiked(); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.l.StartMobiked(ctx, r.bin, r.cfg); err != nil {
		r.t.Fatal(err)
	}
}

// events records mobiked's decision trace from the moment it is called
// (the stream's history is ignored).
type events struct {
	mu   sync.Mutex
	from time.Time
	evs  []control.Event
}

func (r *labRig) recordEvents(ctx context.Context) *events {
	e := &events{from: time.Now()}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.c.Events(ctx, func(ev control.Event) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if !ev.At.Before(e.from) {
				e.evs = append(e.evs, ev)
			}
		})
	}()
	r.t.Cleanup(func() { cancel(); <-done })
	// The stream is live once its history arrived; give the subscription a
	// moment to be registered before the caller acts.
	time.Sleep(200 * time.Millisecond)
	return e
}

// match returns the recorded events of kind whose text contains sub.
func (e *events) match(kind, sub string) []control.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []control.Event
	for _, ev := range e.evs {
		if ev.Kind == kind && strings.Contains(ev.Text, sub) {
			out = append(out, ev)
		}
	}
	return out
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.evs {
		b.WriteString(ev.At.Format("15:04:05.000") + " " + ev.Kind + " " + ev.Text + "\n")
	}
	return b.String()
}
