package conform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/mobiked/mobiked/internal/ikeudp"
	"github.com/mobiked/mobiked/mobike/ike"
)

// Usage is the command line of mobike-conform.
const Usage = `usage: mobike-conform --peer ADDR [--peer ADDR2] --local ADDR[,ADDR2] [--psk-file F] [--id ID] [--json]

Establishes an IKEv2 SA (pre-shared key) with the gateway at the first --peer
from the first --local address and runs RFC 4555 (MOBIKE) checks against it:
MOBIKE negotiation, the gateway's address list, return routability on every
local x peer pair, address updates (also through a NAT), address lists, a
retransmitted update from a second source, NO_NATS_ALLOWED, delete.

  --peer ADDR     gateway address (IKE port 500); repeat for its second address
  --local A[,B]   local addresses, one socket each (bound to their uplink)
  --psk-file F    file holding the pre-shared key (trailing newline ignored);
                  default: the MOBIKE_CONFORM_PSK environment variable
  --id ID         our identity: an IP address, a name (FQDN), user@domain,
                  keyid:HEX; default: the first --local address
  --json          print {"peer", "checks": [{id, section, level, status, detail}]}

Exit status: 0 when every MUST check that ran passed, 1 otherwise, 2 on
usage errors. MOBIKE_CONFORM_DEBUG=1 logs every exchange on stderr.
`

// ErrUsage is a bad command line.
var ErrUsage = errors.New("usage")

// Options is a parsed command line.
type Options struct {
	Peers  []netip.Addr
	Locals []netip.Addr
	PSK    []byte
	ID     ike.ID
	JSON   bool
}

// ParseArgs reads the command line (getenv for MOBIKE_CONFORM_PSK).
func ParseArgs(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("mobike-conform", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("peer", "gateway address", func(s string) error {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--peer %q is not an IP address", s)
		}
		o.Peers = append(o.Peers, a.Unmap())
		return nil
	})
	fs.Func("local", "local addresses", func(s string) error {
		for _, f := range strings.Split(s, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("--local %q is not an IP address", f)
			}
			o.Locals = append(o.Locals, a.Unmap())
		}
		return nil
	})
	pskFile := fs.String("psk-file", "", "pre-shared key file")
	id := fs.String("id", "", "identity")
	fs.BoolVar(&o.JSON, "json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	switch {
	case len(o.Peers) == 0:
		return o, fmt.Errorf("%w: --peer is required", ErrUsage)
	case len(o.Peers) > 2:
		return o, fmt.Errorf("%w: at most two --peer addresses", ErrUsage)
	case len(o.Locals) == 0:
		return o, fmt.Errorf("%w: --local is required", ErrUsage)
	case len(o.Locals) > 2:
		return o, fmt.Errorf("%w: at most two --local addresses", ErrUsage)
	}
	for _, a := range append(append([]netip.Addr{}, o.Peers...), o.Locals...) {
		if a.Is4() != o.Peers[0].Is4() {
			return o, fmt.Errorf("%w: --peer and --local addresses must be of one family", ErrUsage)
		}
	}
	if *pskFile != "" {
		b, err := os.ReadFile(*pskFile)
		if err != nil {
			return o, fmt.Errorf("%w: --psk-file: %v", ErrUsage, err)
		}
		o.PSK = []byte(strings.TrimRight(string(b), "\r\n"))
	} else {
		o.PSK = []byte(getenv("MOBIKE_CONFORM_PSK"))
	}
	if len(o.PSK) == 0 {
		return o, fmt.Errorf("%w: no pre-shared key (--psk-file or MOBIKE_CONFORM_PSK)", ErrUsage)
	}
	if *id == "" {
		o.ID = ike.AddrID(o.Locals[0])
	} else {
		var err error
		if o.ID, err = ike.ParseID(*id); err != nil {
			return o, fmt.Errorf("%w: --id: %v", ErrUsage, err)
		}
	}
	return o, nil
}

// Listener is a transport that can be closed; *ikeudp.Transport is one.
type Listener interface {
	Transport
	Close() error
}

// ListenFunc opens the transport; ikeudp.Listen by default. The lab passes
// one that opens the sockets inside its client namespace.
type ListenFunc func(ikeudp.Config) (Listener, error)

// UDP is the default ListenFunc.
func UDP(c ikeudp.Config) (Listener, error) { return ikeudp.Listen(c) }

// Env is what Main takes from its surroundings; zero fields take the
// process's environment, ikeudp sockets and the wall clock.
type Env struct {
	Getenv func(string) string
	Listen ListenFunc
	Clock  Clock
}

// Main is mobike-conform: it parses args, runs the suite and prints the
// report. It returns the exit status and the report (nil when the suite did
// not run).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) (int, *Report) {
	getenv, listen := env.Getenv, env.Listen
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, Usage)
			return 0, nil
		}
	}
	o, err := ParseArgs(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "mobike-conform: %v\n\n%s", err, Usage)
		return 2, nil
	}
	if listen == nil {
		listen = UDP
	}
	log := slog.New(slog.DiscardHandler)
	if getenv("MOBIKE_CONFORM_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tr, err := listen(ikeudp.Config{Locals: o.Locals, Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "mobike-conform: %v\n", err)
		return 1, nil
	}
	defer tr.Close()
	res, err := Run(ctx, Config{Peers: o.Peers, Locals: o.Locals, PSK: o.PSK, ID: o.ID, Transport: tr, Log: log, Clock: env.Clock})
	if err != nil {
		fmt.Fprintf(stderr, "mobike-conform: %v\n", err)
		return 1, nil
	}
	if o.JSON {
		err = res.Report.WriteJSON(stdout)
	} else {
		err = res.Report.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mobike-conform: %v\n", err)
		return 1, &res.Report
	}
	if !res.Report.Passed() {
		return 1, &res.Report
	}
	return 0, &res.Report
}
