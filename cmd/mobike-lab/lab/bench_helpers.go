package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	govici "github.com/strongswan/govici/vici"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// PingSample is one echo request of a Pinger.
type PingSample struct {
	Sent time.Duration // since the pinger started
	RTT  time.Duration // < 0: no reply
}

// Pinger sends ICMP echo requests from a source address inside mn to
// PingTarget at a fixed interval and records send and receive times itself
// (no subprocess, so the timestamps stay accurate under CPU load).
type Pinger struct {
	conn     *icmp.PacketConn
	id       int
	interval time.Duration
	start    time.Time
	cancel   context.CancelFunc
	done     chan struct{}
	stopped  atomic.Bool

	mu      sync.Mutex
	sent    []time.Time
	replies map[int]time.Time // seq index → receive time
}

// StartPinger opens a raw ICMP socket in mn bound to src and starts pinging
// PingTarget every interval until Stop.
func (l *Lab) StartPinger(ctx context.Context, src netip.Addr, interval time.Duration) (*Pinger, error) {
	if interval < time.Millisecond {
		return nil, fmt.Errorf("lab: pinger: interval %s too short", interval)
	}
	var conn *icmp.PacketConn
	err := InNetNS(l.NS("mn"), func() error {
		c, err := icmp.ListenPacket("ip4:icmp", src.String())
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: pinger: listen: %w", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	p := &Pinger{conn: conn, id: os.Getpid() & 0xffff, interval: interval, start: time.Now(),
		cancel: cancel, done: make(chan struct{}), replies: map[int]time.Time{}}
	go p.receive()
	go p.send(cctx)
	return p, nil
}

// Start is when the pinger started.
func (p *Pinger) Start() time.Time { return p.start }

func (p *Pinger) send(ctx context.Context) {
	defer close(p.done)
	dst := &net.IPAddr{IP: net.IP(PingTarget.AsSlice())}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	payload := make([]byte, 56)
	for seq := 0; ; seq++ {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq & 0xffff, Data: payload}}
		b, err := m.Marshal(nil)
		if err == nil {
			p.mu.Lock()
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			_, _ = p.conn.WriteTo(b, dst) // an unroutable moment counts as a loss
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pinger) receive() {
	buf := make([]byte, 1500)
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.stopped.Load() {
				return
			}
			continue
		}
		now := time.Now()
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id {
			continue
		}
		p.mu.Lock()
		// Map the 16-bit sequence number back to the newest matching index.
		idx := -1
		for i := len(p.sent) - 1; i >= 0 && i >= len(p.sent)-0x10000; i-- {
			if i&0xffff == e.Seq {
				idx = i
				break
			}
		}
		if _, dup := p.replies[idx]; idx >= 0 && !dup {
			p.replies[idx] = now
		}
		p.mu.Unlock()
	}
}

// Stop stops sending, waits grace for late replies and returns the samples.
func (p *Pinger) Stop(grace time.Duration) []PingSample {
	p.cancel()
	<-p.done
	time.Sleep(grace)
	p.stopped.Store(true)
	_ = p.conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PingSample, len(p.sent))
	for i, s := range p.sent {
		out[i] = PingSample{Sent: s.Sub(p.start), RTT: -1}
		if r, ok := p.replies[i]; ok {
			out[i].RTT = r.Sub(s)
		}
	}
	return out
}

// SAEvent is one ike-update or ike-updown event of mn's charon, stamped when
// it arrived.
type SAEvent struct {
	At       time.Time
	Name     string // ike-update or ike-updown
	Conn     string
	UniqueID string
	Local    string // host only
	Remote   string
	Up       bool // ike-updown: up
}

// SAEventRecorder records mn's charon SA events over one VICI session.
type SAEventRecorder struct {
	s    *govici.Session
	ch   chan govici.Event
	done chan struct{}
	mu   sync.Mutex
	evs  []SAEvent
}

// RecordSAEvents subscribes to mn's ike-update and ike-updown events.
func (l *Lab) RecordSAEvents() (*SAEventRecorder, error) {
	s, err := govici.NewSession(govici.WithSocketPath(l.VICISocket("mn")))
	if err != nil {
		return nil, fmt.Errorf("lab: vici mn: %w", err)
	}
	r := &SAEventRecorder{s: s, ch: make(chan govici.Event, 1<<16), done: make(chan struct{})}
	s.NotifyEvents(r.ch)
	if err := s.Subscribe("ike-update", "ike-updown"); err != nil {
		s.Close()
		return nil, fmt.Errorf("lab: vici mn: subscribe: %w", err)
	}
	go r.loop()
	return r, nil
}

func (r *SAEventRecorder) loop() {
	for {
		select {
		case <-r.done:
			return
		case ev := <-r.ch:
			if ev.Message == nil {
				continue
			}
			at := ev.Timestamp
			if at.IsZero() {
				at = time.Now()
			}
			for _, k := range ev.Message.Keys() {
				m, ok := ev.Message.Get(k).(*govici.Message)
				if !ok {
					continue
				}
				se := SAEvent{At: at, Name: ev.Name, Conn: k}
				se.UniqueID, _ = m.Get("uniqueid").(string)
				if ev.Name == "ike-update" {
					// ike-update carries the new endpoints at the top level.
					se.Local, _ = ev.Message.Get("local-host").(string)
					se.Remote, _ = ev.Message.Get("remote-host").(string)
				} else {
					se.Local, _ = m.Get("local-host").(string)
					se.Remote, _ = m.Get("remote-host").(string)
					up, _ := ev.Message.Get("up").(string)
					se.Up = up == "yes"
				}
				r.mu.Lock()
				r.evs = append(r.evs, se)
				r.mu.Unlock()
			}
		}
	}
}

// Events returns a copy of what was recorded so far.
func (r *SAEventRecorder) Events() []SAEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SAEvent(nil), r.evs...)
}

// Close ends the session.
func (r *SAEventRecorder) Close() {
	close(r.done)
	_ = r.s.Close()
}

// Initiator starts IKE SAs of mn's charon through one VICI session.
type Initiator struct{ s *govici.Session }

// NewInitiator opens the session.
func (l *Lab) NewInitiator() (*Initiator, error) {
	s, err := govici.NewSession(govici.WithSocketPath(l.VICISocket("mn")))
	if err != nil {
		return nil, fmt.Errorf("lab: vici mn: %w", err)
	}
	return &Initiator{s: s}, nil
}

// Initiate asks charon to start conn's IKE SA and returns at once (timeout
// -1: charon answers without streaming logs).
func (i *Initiator) Initiate(ctx context.Context, conn string) error {
	m := govici.NewMessage()
	if err := m.Set("ike", conn); err != nil {
		return err
	}
	if err := m.Set("timeout", "-1"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := i.s.Call(cctx, "initiate", m); err != nil {
		return fmt.Errorf("lab: initiate %s: %w", conn, err)
	}
	return nil
}

// Close ends the session.
func (i *Initiator) Close() error { return i.s.Close() }

// InitiateAll starts the IKE SAs of conns through one VICI session.
func (l *Lab) InitiateAll(ctx context.Context, conns []string) error {
	in, err := l.NewInitiator()
	if err != nil {
		return err
	}
	defer in.Close()
	for _, c := range conns {
		if err := in.Initiate(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// MobikedMetrics returns the text exposition of mobiked's metrics endpoint
// inside mn. The TCP socket is dialled on the thread that InNetNS switched
// into mn (http.Transport would dial on another goroutine, i.e. in the host
// namespace) and handed to a one-shot client.
func (l *Lab) MobikedMetrics(ctx context.Context) ([]byte, error) {
	code, body, err := l.MobikedHTTP(ctx, "/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: metrics: %w", err)
	}
	return body, nil
}

// MobikedHTTP GETs path from the lab's mobiked metrics listener
// (127.0.0.1:9816 in mn) and returns the status code and body.
func (l *Lab) MobikedHTTP(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9816"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, body, err := l.MobikedDo(ctx, req, nil)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// MobikedDo sends req to the lab's mobiked metrics listener (127.0.0.1:9816
// in mn, whatever req's host), over TLS with tlsConf when req's scheme is
// https, and returns the response with its body read. The TCP socket is
// dialled on the thread that InNetNS switched into mn (http.Transport would
// dial on another goroutine, i.e. in the host namespace) and handed to a
// one-shot client.
func (l *Lab) MobikedDo(ctx context.Context, req *http.Request, tlsConf *tls.Config) (*http.Response, []byte, error) {
	var resp *http.Response
	var body []byte
	err := InNetNS(l.NS("mn"), func() error {
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", "127.0.0.1:9816")
		if err != nil {
			return err
		}
		tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConf,
			DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
		resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			conn.Close()
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return resp, body, err
}

// MobikedMetric sums the samples of one metric family (all label sets) from
// mobiked's metrics endpoint inside mn.
func (l *Lab) MobikedMetric(ctx context.Context, family string) (float64, error) {
	body, err := l.MobikedMetrics(ctx)
	if err != nil {
		return 0, err
	}
	return SumMetric(string(body), family), nil
}

// SumMetric sums the values of family's samples in Prometheus text format.
func SumMetric(text, family string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, family) {
			continue
		}
		rest := line[len(family):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// ProcStats are a process's resident memory and CPU time.
type ProcStats struct {
	RSSBytes int64
	HWMBytes int64         // peak RSS
	CPU      time.Duration // user + system
}

// ReadProcStats reads /proc/PID/status (VmRSS) and /proc/PID/stat (utime,
// stime).
func ReadProcStats(pid int) (ProcStats, error) {
	var ps ProcStats
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, fmt.Errorf("lab: proc stats: %w", err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		for _, kv := range []struct {
			key string
			dst *int64
		}{{"VmRSS:", &ps.RSSBytes}, {"VmHWM:", &ps.HWMBytes}} {
			if rest, ok := strings.CutPrefix(line, kv.key); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					*kv.dst = kb * 1024
				}
			}
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, fmt.Errorf("lab: proc stats: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, errors.New("lab: proc stats: malformed stat")
	}
	// Fields after ")": state(3) ... utime(14) stime(15), 1-based overall.
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return ps, errors.New("lab: proc stats: short stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stm, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	ps.CPU = time.Duration(ut+stm) * time.Second / clkTck
	return ps, nil
}
