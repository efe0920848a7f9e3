// Package vici is mobiked's strongSwan adapter: it turns charon's VICI events
// and list-sas/list-conns answers into mobike events, survives charon
// restarts, and resyncs periodically so that a dropped event cannot leave
// stale state. govici types do not leave this package.
package vici

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/mobiked/mobiked/mobike"
)

// Defaults; each is explained where it is used.
const (
	// DefaultSocket is charon's VICI socket on Debian.
	DefaultSocket = "/var/run/charon.vici"
	// DefaultResync bounds how long a dropped event can leave stale state.
	DefaultResync = 30 * time.Second
	// DefaultCallTimeout bounds every command. govici kills the session when
	// a read takes longer than ctx's deadline + 5 s, so every call carries a
	// deadline.
	DefaultCallTimeout = 10 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound reconnect attempts; the
	// cap keeps reconnection within ~1 s of charon's socket reappearing.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = time.Second
	// DefaultEventBuffer is the govici notification buffer. govici drops
	// events silently when it is full; one route change moves every SA and
	// yields several events per SA, so size it for thousands of SAs.
	DefaultEventBuffer = 1 << 16
	// DefaultOutBuffer is the Events() channel size.
	DefaultOutBuffer = 4096
	// DefaultMaxStuck is how many sessions may stay stuck in govici after
	// being closed before Run gives up (ErrStuck). frameConn makes the known
	// deadlock impossible; this bounds an unknown one: each stuck session
	// keeps its goroutines and buffers (~3 MiB), so the daemon exits and
	// lets its supervisor restart it instead of growing.
	DefaultMaxStuck = 4
	// stuckGrace is how long a closed session's Subscribe may take to
	// return before it counts as stuck.
	stuckGrace = time.Second
)

// ErrCharonUnavailable is returned by commands while no session to charon is
// up.
var ErrCharonUnavailable = errors.New("vici: charon unavailable")

// ErrStuck is returned by Run when MaxStuck closed sessions never ended: the
// process should restart (mobiked exits with status 3).
var ErrStuck = errors.New("vici: sessions stuck in the VICI library after close")

// saEventNames are the charon events the adapter subscribes to, on one
// session (their relative order matters). charon's `log` events are not
// used: at levels 0–1 they carry nothing the probes do not detect sooner
// (charon's first retransmit comes seconds after a probe verdict). govici
// v0.8.1 holds its event lock while it waits for a registration's answer,
// and its read loop needs that lock to deliver any event: an event arriving
// before the last answer of a Subscribe (charon confirms a registration after
// adding the client, so an event raised in between comes first) hangs the
// session for good (seen in the lab after a charon restart). frameConn holds
// such events back until the answers are through. The SA events are
// registered in one Subscribe call.
var saEventNames = []string{"ike-updown", "ike-update", "ike-rekey", "child-updown", "child-rekey"}

// Options configure a Client. Zero values mean the defaults above.
type Options struct {
	Socket      string
	Logger      *slog.Logger
	Resync      time.Duration // < 0 disables the periodic resync
	CallTimeout time.Duration
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	EventBuffer int
	OutBuffer   int
	MaxStuck    int // default DefaultMaxStuck
}

// Stats are counters of what the client saw.
type Stats struct {
	Events     map[string]uint64 // charon events received, by name
	Connects   uint64            // successful (re)connections
	Resyncs    uint64            // list-sas resyncs that succeeded
	DecodeErrs uint64
	Stuck      int // closed sessions whose Subscribe has not returned
}

// Client is the VICI adapter. Run drives it; commands may be called from any
// goroutine while Run is connected.
type Client struct {
	opts Options
	log  *slog.Logger
	out  chan mobike.Event

	// mu guards the command session fields below and serialises commands
	// (a VICI connection carries one command at a time, and list-sas needs
	// its list-sa events to itself).
	mu      sync.Mutex
	cmd     *govici.Session
	listCh  chan govici.Event
	running bool
	stop    context.CancelFunc // cancels Run

	// smu guards stats.
	smu   sync.Mutex
	stats Stats

	// done is closed when Run returns.
	done chan struct{}

	// stuck counts closed sessions whose Subscribe has not returned.
	stuck atomic.Int64
	// subscribeFn is Session.Subscribe and stuckGrace the const; a test
	// replaces them.
	subscribeFn func(s *govici.Session, names ...string) error
	stuckGrace  time.Duration
}

// New returns a client; it connects when Run is called.
func New(opts Options) *Client {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = opts.BackoffMin
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = DefaultEventBuffer
	}
	if opts.OutBuffer <= 0 {
		opts.OutBuffer = DefaultOutBuffer
	}
	if opts.MaxStuck <= 0 {
		opts.MaxStuck = DefaultMaxStuck
	}
	return &Client{
		subscribeFn: (*govici.Session).Subscribe,
		stuckGrace:  stuckGrace,
		done:        make(chan struct{}),
		stop:        func() {},
		opts:        opts,
		log:         opts.Logger.With("component", "vici"),
		out:         make(chan mobike.Event, opts.OutBuffer),
		stats:       Stats{Events: map[string]uint64{}},
	}
}

// Events delivers the converted events. It is closed when Run returns.
func (c *Client) Events() <-chan mobike.Event { return c.out }

// Stats returns a copy of the counters.
func (c *Client) Stats() Stats {
	c.smu.Lock()
	defer c.smu.Unlock()
	s := c.stats
	s.Events = make(map[string]uint64, len(c.stats.Events))
	for k, v := range c.stats.Events {
		s.Events[k] = v
	}
	s.Stuck = int(c.stuck.Load())
	return s
}

// Connected reports whether a session to charon is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// Close stops Run (if it was started) and waits until it has closed its
// sessions and the Events channel.
func (c *Client) Close() error {
	c.mu.Lock()
	stop, running := c.stop, c.running
	c.mu.Unlock()
	stop()
	if running {
		<-c.done
	}
	return nil
}

// Run connects to charon and delivers events until ctx is cancelled,
// reconnecting with capped exponential backoff whenever charon goes away.
// It returns nil on cancellation. Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		cancel()
		return errors.New("vici: run called twice")
	}
	c.running, c.stop = true, cancel
	c.mu.Unlock()
	defer close(c.done)
	defer cancel()
	defer close(c.out)
	backoff := c.opts.BackoffMin
	for {
		up, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if n := c.stuck.Load(); n >= int64(c.opts.MaxStuck) {
			c.log.Error("giving up: VICI sessions stuck after close; restart needed", "stuck", n, "err", err)
			return fmt.Errorf("%w (%d): %v", ErrStuck, n, err)
		}
		if up {
			backoff = c.opts.BackoffMin
			c.log.Warn("charon session lost", "err", err)
			if !c.emit(ctx, mobike.EvCharon{Up: false}) {
				return nil
			}
		} else {
			c.log.Debug("charon connect failed", "err", err, "retry_seconds", backoff.Seconds())
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if !up {
			backoff = min(backoff*2, c.opts.BackoffMax)
		}
	}
}

func (c *Client) emit(ctx context.Context, ev mobike.Event) bool {
	select {
	case c.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// dial opens a session whose connection goes through a frameConn.
func (c *Client) dial() (*govici.Session, *frameConn, error) {
	d := net.Dialer{Timeout: c.opts.CallTimeout}
	var fc *frameConn
	s, err := govici.NewSession(
		govici.WithSocketPath(c.opts.Socket),
		govici.WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			fc = newFrameConn(conn)
			return fc, nil
		}),
	)
	if err != nil {
		return nil, nil, err
	}
	return s, fc, nil
}

// subscribe registers events. govici's Subscribe takes no context and waits
// up to its 5 s read deadline; a charon that is shutting down can still accept
// the connection and never answer, which would hold the reconnect for 5 s
// while a new charon is already up. So the wait is bounded by CallTimeout
// (at most 2 s): on timeout the session is closed (which ends Subscribe) and
// Run retries like after any other connection failure. A Subscribe that does
// not end within stuckGrace of the close counts as stuck until it does.
func (c *Client) subscribe(s *govici.Session, fc *frameConn, names ...string) error {
	limit := min(c.opts.CallTimeout, 2*time.Second)
	fc.expect(len(names)) // events wait behind the answers (frameConn)
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- c.subscribeFn(s, names...)
		if !state.CompareAndSwap(running, finished) {
			c.stuck.Add(-1) // a stuck one ended after all
		}
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	s.Close()
	g := time.NewTimer(c.stuckGrace)
	defer g.Stop()
	select {
	case <-done:
	case <-g.C:
		if state.CompareAndSwap(running, abandoned) {
			n := c.stuck.Add(1)
			c.log.Error("VICI session stuck after close", "stuck", n, "limit", c.opts.MaxStuck)
		}
	}
	return fmt.Errorf("no answer within %s", limit)
}

// session runs one connection to charon. up tells whether it got as far as
// reporting charon up.
func (c *Client) session(ctx context.Context) (up bool, err error) {
	evSess, evFC, err := c.dial()
	if err != nil {
		return false, fmt.Errorf("vici: connect: %w", err)
	}
	defer evSess.Close()
	cmdSess, cmdFC, err := c.dial()
	if err != nil {
		return false, fmt.Errorf("vici: connect: %w", err)
	}
	defer cmdSess.Close()

	evCh := make(chan govici.Event, c.opts.EventBuffer)
	evSess.NotifyEvents(evCh)
	if err := c.subscribe(evSess, evFC, saEventNames...); err != nil {
		return false, fmt.Errorf("vici: subscribe: %w", err)
	}
	listCh := make(chan govici.Event, c.opts.EventBuffer)
	cmdSess.NotifyEvents(listCh)
	if err := c.subscribe(cmdSess, cmdFC, "list-sa", "list-conn"); err != nil {
		return false, fmt.Errorf("vici: subscribe: %w", err)
	}
	c.mu.Lock()
	c.cmd, c.listCh = cmdSess, listCh
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cmd, c.listCh = nil, nil
		c.mu.Unlock()
	}()
	c.smu.Lock()
	c.stats.Connects++
	c.smu.Unlock()
	c.log.Info("charon session up", "socket", c.opts.Socket)
	if !c.emit(ctx, mobike.EvCharon{Up: true}) {
		return true, ctx.Err()
	}
	if err := c.resync(ctx); err != nil {
		return true, err
	}

	var tick <-chan time.Time
	if c.opts.Resync > 0 {
		t := time.NewTicker(c.opts.Resync)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case ev, ok := <-evCh:
			if !ok {
				return true, errors.New("vici: event session closed")
			}
			c.handle(ctx, ev)
		case <-tick:
			if err := c.resync(ctx); err != nil {
				return true, err
			}
		}
	}
}

func (c *Client) handle(ctx context.Context, ev govici.Event) {
	c.smu.Lock()
	c.stats.Events[ev.Name]++
	c.smu.Unlock()
	evs, err := decodeEvent(ev.Name, ev.Message)
	if err != nil {
		c.smu.Lock()
		c.stats.DecodeErrs++
		c.smu.Unlock()
		c.log.Warn("undecodable charon event", "event", ev.Name, "err", err)
		return
	}
	for _, e := range evs {
		if !c.emit(ctx, e) {
			return
		}
	}
}

// resync emits EvConns and EvSAList from list-conns and list-sas.
func (c *Client) resync(ctx context.Context) error {
	conns, err := c.ListConns(ctx)
	if err != nil {
		return err
	}
	sas, err := c.ListSAs(ctx)
	if err != nil {
		return err
	}
	c.smu.Lock()
	c.stats.Resyncs++
	c.smu.Unlock()
	if !c.emit(ctx, mobike.EvConns{Conns: conns}) {
		return ctx.Err()
	}
	if !c.emit(ctx, mobike.EvSAList{SAs: sas}) {
		return ctx.Err()
	}
	return nil
}

// callCtx gives ctx the client's call timeout unless it has an earlier
// deadline.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.opts.CallTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.CallTimeout)
}

// drain empties ch without blocking and returns what was in it. ok is false
// when ch was closed (the session died).
func drain(ch chan govici.Event) (evs []govici.Event, ok bool) {
	for {
		select {
		case ev, open := <-ch:
			if !open {
				return evs, false
			}
			evs = append(evs, ev)
		default:
			return evs, true
		}
	}
}

// listCall runs a listing command and collects its streamed events. It uses
// the subscribe + Call workaround: govici's CallStreaming loses events with
// many SAs, while a subscriber channel receives every event before the
// response is queued.
func (c *Client) listCall(ctx context.Context, cmd, event string) ([]*govici.Message, error) {
	return c.listCallMsg(ctx, cmd, event, nil)
}

// listCallMsg is listCall with a request message (filters).
func (c *Client) listCallMsg(ctx context.Context, cmd, event string, in *govici.Message) ([]*govici.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil, ErrCharonUnavailable
	}
	if _, ok := drain(c.listCh); !ok {
		return nil, fmt.Errorf("vici: %s: %w", cmd, ErrCharonUnavailable)
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	if _, err := c.cmd.Call(cctx, cmd, in); err != nil {
		return nil, fmt.Errorf("vici: %s: %w", cmd, err)
	}
	evs, _ := drain(c.listCh)
	out := make([]*govici.Message, 0, len(evs))
	for _, ev := range evs {
		if ev.Name == event {
			out = append(out, ev.Message)
		}
	}
	return out, nil
}

// ListIKESAs returns charon's IKE_SAs in the typed form.
func (c *Client) ListIKESAs(ctx context.Context) ([]IKESA, error) {
	msgs, err := c.listCall(ctx, "list-sas", "list-sa")
	if err != nil {
		return nil, err
	}
	var out []IKESA
	for _, m := range msgs {
		sas, err := decodeListSA(m)
		if err != nil {
			c.smu.Lock()
			c.stats.DecodeErrs++
			c.smu.Unlock()
			c.log.Warn("undecodable list-sa", "err", err)
			continue
		}
		out = append(out, sas...)
	}
	return out, nil
}

// ListSAs returns charon's IKE_SAs in the core's form.
func (c *Client) ListSAs(ctx context.Context) ([]mobike.SA, error) {
	sas, err := c.ListIKESAs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]mobike.SA, 0, len(sas))
	for _, s := range sas {
		out = append(out, s.SA())
	}
	return out, nil
}

// ListConns returns charon's loaded connections.
func (c *Client) ListConns(ctx context.Context) ([]mobike.Conn, error) {
	msgs, err := c.listCall(ctx, "list-conns", "list-conn")
	if err != nil {
		return nil, err
	}
	var out []mobike.Conn
	for _, m := range msgs {
		out = append(out, decodeListConn(m)...)
	}
	return out, nil
}

// call runs a plain command on the command session.
func (c *Client) call(ctx context.Context, cmd string, in *govici.Message) (*govici.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil, ErrCharonUnavailable
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	return c.cmd.Call(cctx, cmd, in)
}

// Initiate asks charon to start the IKE_SA of connection ike (and its
// children) and returns at once (timeout = -1: charon does not stream
// control-log and the call cannot run into govici's read deadline).
func (c *Client) Initiate(ctx context.Context, ike string) error {
	m := govici.NewMessage()
	if err := m.Set("ike", ike); err != nil {
		return fmt.Errorf("vici: initiate %q: %w", ike, err)
	}
	if err := m.Set("timeout", "-1"); err != nil {
		return fmt.Errorf("vici: initiate %q: %w", ike, err)
	}
	if _, err := c.call(ctx, "initiate", m); err != nil {
		return fmt.Errorf("vici: initiate %q: %w", ike, err)
	}
	return nil
}

// Version returns charon's version string.
func (c *Client) Version(ctx context.Context) (string, error) {
	m, err := c.call(ctx, "version", nil)
	if err != nil {
		return "", fmt.Errorf("vici: version: %w", err)
	}
	return str(m, "version"), nil
}
