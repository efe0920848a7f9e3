// Package httpserve gives mobiked's HTTP servers (the control API on its
// unix socket, the Prometheus listener) the limits net/http leaves off:
// read, write and idle timeouts, a header size cap and a cap on concurrent
// connections. It works on any *http.Server and net.Listener, so a server
// started by another package (e.g. exporter-toolkit's web.Serve, which takes
// both) can use it:
//
//	ln = httpserve.Harden(srv, ln, httpserve.DefaultLimits())
//	go srv.Serve(ln) // or web.Serve(ln, srv, ...)
package httpserve

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of one server. Zero fields take the defaults.
type Limits struct {
	// ReadHeader bounds reading a request's headers (slowloris). Default 5s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included. Default 10s.
	Read time.Duration
	// Write bounds writing a response. Default 30s. A streaming handler
	// extends it per write (StreamWriteDeadline).
	Write time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request. Default 5s (a scrape every 15s reconnects: cheap, and idle
	// connections cannot pile up).
	Idle time.Duration
	// MaxHeaderBytes caps a request's headers. Default 64 KiB.
	MaxHeaderBytes int
	// MaxConns caps the connections served at once; more wait in the
	// listen backlog. Default 64.
	MaxConns int
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits { return Limits{}.withDefaults() }

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeader, 5*time.Second)
	def(&l.Read, 10*time.Second)
	def(&l.Write, 30*time.Second)
	def(&l.Idle, 5*time.Second)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 64
	}
	return l
}

// Harden sets l's timeouts and header cap on srv and returns ln wrapped so
// that at most l.MaxConns connections are open at once. Serve srv on the
// returned listener.
func Harden(srv *http.Server, ln net.Listener, l Limits) net.Listener {
	l = l.withDefaults()
	srv.ReadHeaderTimeout = l.ReadHeader
	srv.ReadTimeout = l.Read
	srv.WriteTimeout = l.Write
	srv.IdleTimeout = l.Idle
	srv.MaxHeaderBytes = l.MaxHeaderBytes
	return netutil.LimitListener(ln, l.MaxConns)
}

// StreamWriteDeadline moves the write deadline of a streaming response (one
// that outlives Limits.Write, like `mobikectl events`) to d from now; call it
// before each write, so that a client that stops reading is dropped after d
// while one that reads stays connected.
func StreamWriteDeadline(w http.ResponseWriter, d time.Duration) error {
	return http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
