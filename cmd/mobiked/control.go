package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/internal/httpserve"
	"github.com/mobiked/mobiked/mobike"
)

// traceRing keeps the last decision-trace lines and fans new ones out to
// `mobikectl events` subscribers (dropping for slow ones).
type traceRing struct {
	mu   sync.Mutex // guards the fields below
	buf  []control.Event
	next int
	full bool
	subs map[chan control.Event]struct{}
}

func newTraceRing(n int) *traceRing {
	return &traceRing{buf: make([]control.Event, n), subs: map[chan control.Event]struct{}{}}
}

func (r *traceRing) add(ev control.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = ev
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (r *traceRing) subscribe(last int) ([]control.Event, chan control.Event, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hist []control.Event
	if r.full {
		hist = append(hist, r.buf[r.next:]...)
	}
	hist = append(hist, r.buf[:r.next]...)
	if len(hist) > last {
		hist = hist[len(hist)-last:]
	}
	ch := make(chan control.Event, 256)
	r.subs[ch] = struct{}{}
	return hist, ch, func() {
		r.mu.Lock()
		delete(r.subs, ch)
		r.mu.Unlock()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, control.Error{Error: fmt.Sprintf(format, args...)})
}

// snapshot reads the core's state on the loop goroutine.
func (d *daemon) snapshot(ctx context.Context) (mobike.State, error) {
	var st mobike.State
	err := d.loop.Do(ctx, func() { st = d.core.Snapshot() })
	return st, err
}

func addrStr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// statusOf renders `mobikectl status`.
func statusOf(st mobike.State) control.Status {
	out := control.Status{CharonUp: st.CharonUp, At: st.At, SAs: []control.SARow{}}
	uplinkOf := map[netip.Addr]string{}
	pairSince := map[mobike.Pair]time.Time{}
	for _, p := range st.Pairs {
		uplinkOf[p.Pair.Local] = p.Uplink
		pairSince[p.Pair] = p.Since
	}
	conns := map[string]mobike.ConnView{}
	for _, c := range st.Conns {
		conns[c.Name] = c
	}
	for _, sa := range st.SAs {
		c := conns[sa.Conn]
		row := control.SARow{Conn: sa.Conn, ID: sa.UniqueID, State: sa.State.String(), Initiator: sa.Initiator,
			Local: sa.Local.String(), Remote: sa.Remote.String(), Uplink: uplinkOf[sa.Pair.Local], Why: c.Decision}
		if c.Steering {
			row.Steering = c.SteerTo.String()
			row.Since = c.SteerSince
		}
		if !sa.Initiator && row.Why == "" {
			row.Why = "responder: monitored, never steered"
		}
		out.SAs = append(out.SAs, row)
	}
	return out
}

func pathsOf(st mobike.State) []control.PathRow {
	active := map[mobike.Pair]bool{}
	for _, sa := range st.SAs {
		active[sa.Pair] = true
	}
	rows := []control.PathRow{}
	for _, p := range st.Pairs {
		rows = append(rows, control.PathRow{Local: addrStr(p.Pair.Local), Remote: addrStr(p.Pair.Remote), Uplink: p.Uplink,
			State: p.State.String(), Reason: p.Reason.String(), Since: p.Since, RTTms: ms(p.Stats.SRTT),
			Loss: p.Stats.LossRatio, NAT: p.Stats.NAT.String(), Method: p.Probe.Method.String(),
			Profile: p.Probe.Profile.String(), Sent: p.Stats.Sent, Received: p.Stats.Received, Active: active[p.Pair],
			BytesSent: p.Stats.BytesSent, RTOms: ms(p.Stats.RTO)})
	}
	return rows
}

func explainOf(st mobike.State, conn string) (control.Explain, bool) {
	for _, c := range st.Conns {
		if c.Name != conn {
			continue
		}
		e := control.Explain{Conn: c.Name, Current: c.Current.String(), Decision: c.Decision, Prefer: c.Prefer,
			PreferUntil: c.PreferUntil, Peers: []string{}, Candidates: []control.Candidate{}}
		if !c.Current.Local.IsValid() {
			e.Current = ""
		}
		e.Group, e.Members, e.Lead, e.Conflict = c.Group, c.Members, c.Lead, c.Conflict
		if c.GroupPair.Local.IsValid() {
			e.GroupPair = c.GroupPair.String()
		}
		for _, p := range c.Peers {
			e.Peers = append(e.Peers, p.String())
		}
		for _, r := range c.Ranking {
			e.Candidates = append(e.Candidates, control.Candidate{Rank: r.Rank, Local: addrStr(r.Local), Remote: addrStr(r.Remote),
				Uplink: r.Uplink.Name, Eligible: r.Eligible, SLAMet: r.SLAMet, State: r.State, NAT: r.NAT,
				RTTms: ms(r.RTT), Loss: r.Loss, Current: r.Current, Reason: r.Reason})
		}
		return e, true
	}
	return control.Explain{}, false
}

// listenControl listens on the control socket at path (mode 0600). Whatever
// is at path is only removed when it is a socket nobody answers on (left by
// a crashed mobiked): a regular file, a symlink, a directory or anything else
// there (a config path typed into control.socket) is refused and left alone,
// and a live socket means another mobiked.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return nil, fmt.Errorf("control: %s exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	default:
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("control: %s is in use (another mobiked?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return ln, nil
}

// serveControl serves the control API on the unix socket (mode 0600).
func (d *daemon) serveControl(ctx context.Context) (*http.Server, error) {
	path := d.cfg.ControlSocket
	if path == "" {
		path = control.DefaultSocket
	}
	ln, err := listenControl(path)
	if err != nil {
		return nil, err
	}
	return d.serveHTTP("control API", d.controlMux(ctx), ln, nil), nil
}

// controlMux is the control API's handler.
func (d *daemon) controlMux(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.snapshot(r.Context())
		if err != nil {
			writeErr(w, http.StatusServiceUnavailable, "%v", err)
			return
		}
		writeJSON(w, http.StatusOK, statusOf(st))
	})
	mux.HandleFunc("GET /v1/paths", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.snapshot(r.Context())
		if err != nil {
			writeErr(w, http.StatusServiceUnavailable, "%v", err)
			return
		}
		writeJSON(w, http.StatusOK, pathsOf(st))
	})
	mux.HandleFunc("GET /v1/explain", func(w http.ResponseWriter, r *http.Request) {
		conn := r.URL.Query().Get("conn")
		st, err := d.snapshot(r.Context())
		if err != nil {
			writeErr(w, http.StatusServiceUnavailable, "%v", err)
			return
		}
		e, ok := explainOf(st, conn)
		if !ok {
			writeErr(w, http.StatusNotFound, "unknown connection %q", conn)
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	mux.HandleFunc("POST /v1/prefer", func(w http.ResponseWriter, r *http.Request) {
		var req control.PreferRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, "bad request: %v", err)
			return
		}
		var bad error
		err := d.loop.Do(r.Context(), func() {
			st := d.core.Snapshot()
			known := false
			for _, c := range st.Conns {
				known = known || c.Name == req.Conn
			}
			if !known {
				bad = fmt.Errorf("unknown connection %q", req.Conn)
				return
			}
			if req.Uplink != "" {
				ok := false
				for _, u := range st.Uplinks {
					ok = ok || u.Name == req.Uplink
				}
				if !ok {
					bad = fmt.Errorf("unknown uplink %q", req.Uplink)
					return
				}
			}
			var until time.Time
			if req.Uplink != "" {
				dur := req.For
				if dur <= 0 {
					dur = 100 * 365 * 24 * time.Hour
				}
				until = time.Now().Add(dur)
			}
			d.loop.Step(r.Context(), mobike.EvPrefer{Conn: req.Conn, Uplink: req.Uplink, Until: until})
		})
		if err == nil {
			err = bad
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, "%v", err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("GET /v1/routing", func(w http.ResponseWriter, r *http.Request) {
		var out control.Routing
		var desired mobike.Desired
		if err := d.loop.Do(r.Context(), func() { desired, out.Gen = d.core.Desired() }); err != nil {
			writeErr(w, http.StatusServiceUnavailable, "%v", err)
			return
		}
		out.Desired = desired.Lines()
		out.AppliedGen = d.steerer.AppliedGen()
		out.Wanted = d.steerer.Dump()
		kernel, err := d.steerer.Kernel()
		if err != nil {
			writeErr(w, http.StatusInternalServerError, "%v", err)
			return
		}
		out.Kernel = kernel
		out.InSync = out.Gen > 0 && out.AppliedGen == out.Gen && slices.Equal(out.Kernel, out.Wanted)
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/doctor", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.doctor(r.Context()))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		hist, ch, cancel := d.trace.subscribe(100)
		defer cancel()
		// a stream outlives the server's write timeout: each write gets its
		// own, so a client that stops reading is dropped
		writeTimeout := httpserve.DefaultLimits().Write
		_ = httpserve.StreamWriteDeadline(w, writeTimeout)
		w.Header().Set("Content-Type", "application/x-ndjson")
		fl, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		for _, ev := range hist {
			_ = enc.Encode(ev)
		}
		if fl != nil {
			fl.Flush()
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-ctx.Done():
				return
			case ev := <-ch:
				_ = httpserve.StreamWriteDeadline(w, writeTimeout)
				if enc.Encode(ev) != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
		}
	})
	return mux
}

// serveHTTP serves h on ln in the background (the control API and the
// metrics listener) with httpserve's limits: read, write and idle timeouts,
// at most 64 connections at once. serve runs the server (nil: srv.Serve; the
// metrics listener passes exporter-toolkit's web.Serve).
func (d *daemon) serveHTTP(name string, h http.Handler, ln net.Listener, serve func(net.Listener, *http.Server) error) *http.Server {
	srv := &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	ln = httpserve.Harden(srv, ln, httpserve.DefaultLimits())
	if serve == nil {
		serve = func(ln net.Listener, srv *http.Server) error { return srv.Serve(ln) }
	}
	go func() {
		if err := serve(ln, srv); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error(name+" stopped", "err", err)
		}
	}()
	return srv
}
