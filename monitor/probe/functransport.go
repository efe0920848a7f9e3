package probe

import (
	"context"
	"sync"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Outcome is the result of one synchronous probe run by a ProbeFunc.
type Outcome struct {
	OK    bool              // a matching reply arrived (return routability is the ProbeFunc's job)
	RTT   time.Duration     // when OK
	NAT   mobike.NATVerdict // what the reply revealed
	Bytes int               // octets put on the wire, headers included (0 if unknown)
}

// ProbeFunc runs one probe of p and returns when it is answered or gives up;
// it must return promptly once ctx is done. An error counts as a lost probe.
type ProbeFunc func(ctx context.Context, p Path) (Outcome, error)

// FuncTransport adapts a blocking probe function, such as the IKE_SA_INIT
// probe of monitor/probe/ike, to the Transport interface: each Send runs the
// function in its own goroutine and delivers a reply when it succeeds.
type FuncTransport struct {
	f       ProbeFunc
	clock   Clock
	timeout time.Duration
	wg      sync.WaitGroup
}

// NewFuncTransport returns a FuncTransport; each run gets a context that ends
// after timeout (default 2s), or earlier when its endpoint is closed. A nil
// clock is the real clock; it must be the Manager's clock.
func NewFuncTransport(f ProbeFunc, c Clock, timeout time.Duration) *FuncTransport {
	if c == nil {
		c = RealClock()
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &FuncTransport{f: f, clock: c, timeout: timeout}
}

// Open implements Transport.
func (t *FuncTransport) Open(p Path, deliver func(Reply)) (Endpoint, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &funcEndpoint{t: t, p: p, deliver: deliver, ctx: ctx, cancel: cancel}, nil
}

// Wait waits for every running probe; the Manager calls it from Close.
func (t *FuncTransport) Wait() { t.wg.Wait() }

type funcEndpoint struct {
	t       *FuncTransport
	p       Path
	deliver func(Reply)
	ctx     context.Context
	cancel  context.CancelFunc
}

func (e *funcEndpoint) NonceLen() int { return 0 }

func (e *funcEndpoint) Close() error {
	e.cancel()
	return nil
}

func (e *funcEndpoint) Send(seq uint32, _ []byte) (int, error) {
	sent := e.t.clock.Now()
	e.t.wg.Go(func() {
		ctx, cancel := context.WithTimeout(e.ctx, e.t.timeout)
		defer cancel()
		out, err := e.t.f(ctx, e.p)
		if err != nil || !out.OK || e.ctx.Err() != nil {
			return // lost: the prober's timeout reports it
		}
		e.deliver(Reply{Seq: seq, At: sent.Add(out.RTT), NAT: out.NAT})
	})
	return 0, nil
}
