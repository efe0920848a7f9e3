package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/internal/httpserve"
	"github.com/mobiked/mobiked/internal/httpserve/httpservetest"
	"github.com/mobiked/mobiked/monitor/metrics"
)

// TestHTTPServersIdleAndConnLimit (issue 13, finding 8): the control API and
// the metrics listener (both served by daemon.serveHTTP) drop idle keep-alive
// connections and serve a bounded number at once; every client is still
// answered in turn. Runs on a virtual clock (synctest) over in-memory pipes.
func TestHTTPServersIdleAndConnLimit(t *testing.T) {
	const clients = 200
	for _, name := range []string{"control", "metrics"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				d := &daemon{trace: newTraceRing(4), log: slog.New(slog.DiscardHandler)}
				ln := httpservetest.NewPipeListener()
				// the metrics listener as serveMetrics runs it: exporter-toolkit's web.Serve
				var h http.Handler = metrics.Handler(prometheus.NewRegistry(), func() error { return nil })
				path, serve := "/metrics", d.webServe(ln)
				if name == "control" {
					h, path, serve = d.controlMux(ctx), "/v1/nothing", nil // a 404 keeps the connection too
				}
				srv := d.serveHTTP(name, h, ln, serve)
				var served, closedByServer atomic.Int64
				for range clients {
					go func() {
						c, err := ln.Dial(ctx)
						if err != nil {
							return
						}
						defer c.Close()
						br := bufio.NewReader(c)
						fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						served.Add(1)
						if _, err := br.ReadByte(); err == io.EOF && ctx.Err() == nil {
							closedByServer.Add(1) // an idle keep-alive connection dropped
						}
					}()
				}
				synctest.Wait()
				s0 := served.Load()
				time.Sleep(8 * time.Second)
				synctest.Wait()
				s8, c8 := served.Load(), closedByServer.Load()
				time.Sleep(time.Minute)
				synctest.Wait()
				s68, c68 := served.Load(), closedByServer.Load()
				t.Logf("%d clients: served at once %d; after 8 s idle %d served, %d dropped; after 68 s %d served, %d dropped",
					clients, s0, s8, c8, s68, c68)
				cancel()
				srv.Close()
				ln.Close()
				if s0 > 64 {
					t.Errorf("%d connections served at once, want ≤ 64", s0)
				}
				if c8 < s0 || c8 == 0 {
					t.Errorf("after 8 s idle only %d of %d keep-alive connections were dropped", c8, s0)
				}
				if s68 != clients || c68 != clients {
					t.Errorf("after 68 s %d of %d clients served, %d dropped when idle; want all", s68, clients, c68)
				}
			})
		})
	}
}

// TestEventsStreamWriteDeadline: `mobikectl events` streams longer than the
// server's write timeout as long as the client reads; a client that stops
// reading is dropped one write timeout after the write it blocks.
func TestEventsStreamWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := &daemon{trace: newTraceRing(16), log: slog.New(slog.DiscardHandler)}
		ln := httpservetest.NewPipeListener()
		srv := d.serveHTTP("control", d.controlMux(ctx), ln, nil)
		defer func() { srv.Close(); ln.Close() }()
		open := func() (*bufio.Reader, func()) {
			c, err := ln.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("events: %v %v", resp, err)
			}
			return bufio.NewReader(resp.Body), func() { c.Close() }
		}
		reader, closeReader := open()
		defer closeReader()
		_, closeStalled := open() // never reads
		defer closeStalled()
		var lines atomic.Int64
		go func() {
			for {
				if _, err := reader.ReadString('\n'); err != nil {
					return
				}
				lines.Add(1)
			}
		}()
		limit := 2 * httpserveWrite()
		for i := 0; time.Duration(i)*time.Second < limit; i++ {
			d.trace.add(controlEvent(i))
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if n := lines.Load(); n < int64(limit/time.Second) {
			t.Fatalf("reading client got %d of %d events over %s", n, int64(limit/time.Second), limit)
		}
		d.trace.mu.Lock()
		subs := len(d.trace.subs)
		d.trace.mu.Unlock()
		if subs != 1 {
			t.Fatalf("%d event subscribers after %s, want 1 (the stalled client dropped)", subs, limit)
		}
	})
}

func httpserveWrite() time.Duration { return httpserve.DefaultLimits().Write }

func controlEvent(i int) control.Event {
	return control.Event{Kind: "test", Text: fmt.Sprintf("event %d %s", i, strings.Repeat("x", 2000))}
}
