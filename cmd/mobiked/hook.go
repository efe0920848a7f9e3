package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/policy"
)

// MoveEvent is one confirmed move of a steering group, as an on_move hook
// sees it: Conn is the group's first connection, Conns all of them
// (connections sharing a peer address move together).
type MoveEvent struct {
	Conn              string
	Conns             []string
	Old, New          mobike.Pair
	OldUplink, Uplink string
	Cause             string
	After             time.Duration // from the steer to charon's confirmation
}

// env renders the event as the hook's MOBIKED_* environment.
func (e MoveEvent) env() []string {
	addr := func(a netip.Addr) string {
		if !a.IsValid() {
			return ""
		}
		return a.String()
	}
	return []string{
		"MOBIKED_EVENT=move",
		"MOBIKED_CONN=" + e.Conn,
		"MOBIKED_CONNS=" + strings.Join(e.Conns, " "),
		"MOBIKED_OLD_LOCAL=" + addr(e.Old.Local),
		"MOBIKED_OLD_REMOTE=" + addr(e.Old.Remote),
		"MOBIKED_NEW_LOCAL=" + addr(e.New.Local),
		"MOBIKED_NEW_REMOTE=" + addr(e.New.Remote),
		"MOBIKED_OLD_UPLINK=" + e.OldUplink,
		"MOBIKED_UPLINK=" + e.Uplink,
		"MOBIKED_CAUSE=" + e.Cause,
		"MOBIKED_AFTER_MS=" + strconv.FormatInt(e.After.Milliseconds(), 10),
	}
}

// hookQueue bounds the moves waiting for their hook; past it a move's hook is
// dropped (and logged), so a hook slower than the moves never grows memory.
const hookQueue = 64

// hookRunner runs the operator's on_move program for each confirmed move,
// one at a time in order, on its own goroutine: the decision loop only
// enqueues (never blocks), and a hung program is killed after the timeout.
type hookRunner struct {
	log *slog.Logger
	q   chan MoveEvent

	mu  sync.Mutex // guards cfg
	cfg policy.Hooks

	// ran is called after each run (tests).
	ran func(MoveEvent, error)
}

func newHookRunner(log *slog.Logger, cfg policy.Hooks) *hookRunner {
	return &hookRunner{log: log, q: make(chan MoveEvent, hookQueue), cfg: cfg}
}

// configure takes a reloaded hooks section.
func (h *hookRunner) configure(cfg policy.Hooks) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.cfg = cfg
	h.mu.Unlock()
}

func (h *hookRunner) config() policy.Hooks {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg
}

// moved enqueues the hook of a confirmed move; it never blocks.
func (h *hookRunner) moved(e MoveEvent) {
	if h == nil || h.config().OnMove == "" {
		return
	}
	select {
	case h.q <- e:
	default:
		h.log.Warn("on_move hook dropped: hooks are backed up", "conn", e.Conn, "queued", hookQueue)
	}
}

// run executes queued hooks until ctx ends.
func (h *hookRunner) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-h.q:
			err := h.exec(ctx, e)
			if h.ran != nil {
				h.ran(e, err)
			}
		}
	}
}

func (h *hookRunner) exec(ctx context.Context, e MoveEvent) error {
	cfg := h.config()
	if cfg.OnMove == "" {
		return nil
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = policy.DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.OnMove)
	cmd.Env = append(hookEnviron(), e.env()...)
	// Its own process group, killed whole at the timeout (a shell hook's
	// children included).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The hook may start children that keep its output open: stop waiting
	// for them shortly after the kill.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("killed after %s: %w", timeout, err)
	}
	attrs := []any{"hook", cfg.OnMove, "conn", e.Conn, "uplink", e.Uplink, "took", time.Since(start).Round(time.Millisecond)}
	if s := bytes.TrimSpace(out.Bytes()); len(s) > 0 {
		if len(s) > 1024 {
			s = s[:1024]
		}
		attrs = append(attrs, "output", string(s))
	}
	if err != nil {
		h.log.Warn("on_move hook failed", append(attrs, "err", err)...)
		return fmt.Errorf("on_move hook %s: %w", cfg.OnMove, err)
	}
	h.log.Info("on_move hook ran", attrs...)
	return nil
}

// hookEnviron is mobiked's environment without systemd's notify and
// watchdog variables (a hook must not speak for mobiked).
func hookEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// hookObserve turns the trace into hook runs (loop goroutine): a steer
// request is remembered per steering group, its confirmation runs on_move
// with the core's steer cause (the label set of mobike_steer_total).
func (d *daemon) hookObserve(now time.Time, o mobike.Observation) {
	if d.steers == nil {
		d.steers = map[string]mobike.SteerRequested{}
	}
	switch o := o.(type) {
	case mobike.SteerRequested:
		d.steers[o.Group] = o
	case mobike.SteerFailed:
		delete(d.steers, o.Group)
	case mobike.SteerConfirmed:
		req, ok := d.steers[o.Group]
		delete(d.steers, o.Group)
		if !ok {
			return
		}
		conns := d.groupMembers(o.Group)
		ev := MoveEvent{Conn: o.Group, Conns: conns, Old: req.From, New: o.Pair, OldUplink: d.uplinkOf(req.From.Local),
			Uplink: d.uplinkOf(o.Pair.Local), Cause: req.Cause.String(), After: o.After}
		if len(conns) > 0 {
			ev.Conn = conns[0]
		}
		d.hooks.moved(ev)
	}
}

// groupMembers returns the connections of a steering group (loop
// goroutine).
func (d *daemon) groupMembers(group string) []string {
	for _, c := range d.core.Snapshot().Conns {
		if c.Group == group {
			return c.Members
		}
	}
	return nil
}

// uplinkOf names the uplink of a local address from the core's network view
// (loop goroutine).
func (d *daemon) uplinkOf(a netip.Addr) string {
	st := d.core.Snapshot()
	for _, u := range st.Uplinks {
		for _, v := range u.Addrs {
			if v.Prefix.Addr() == a {
				return u.Name
			}
		}
	}
	for _, p := range st.Pairs {
		if p.Pair.Local == a {
			return p.Uplink
		}
	}
	return ""
}
