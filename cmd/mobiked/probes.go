package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mobiked/mobiked/internal/safefile"
	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/wire"
	"github.com/mobiked/mobiked/monitor/probe"
	"github.com/mobiked/mobiked/monitor/probe/ike"
	"github.com/mobiked/mobiked/policy"
)

// ikePort is the peer port IKE probes go to (IKE_SA_INIT, RFC 7296 §2.11).
const ikePort = 500

// stampKey returns the STAMP HMAC key of the config (hex in the config, or
// the hex contents of an absolute file path); nil = unauthenticated mode.
// The key file is read once, at start.
func stampKey(r policy.Reflector) ([]byte, error) {
	const maxKeyFile = 4096 // hex digits of a key, whitespace
	if k, ok := r.KeyHex(); ok {
		return k, nil
	}
	path, ok := r.KeyFile()
	if !ok {
		return nil, nil
	}
	data, err := safefile.ReadRegular(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("stamp key: %w", err)
	}
	k, ok := policy.Reflector{Key: strings.TrimSpace(string(data))}.KeyHex()
	if !ok {
		return nil, fmt.Errorf("stamp key: %s: not hex digits", path)
	}
	if len(k) < 16 {
		return nil, fmt.Errorf("stamp key: %s: %d bytes, need at least 16", path, len(k))
	}
	return k, nil
}

// IKE probes and the responder's half-open limit. An IKE_SA_INIT the peer
// accepts leaves a half-open IKE SA there until it times out (charon:
// half_open_timeout 30 s), and charon ignores every IKE_SA_INIT from a peer
// address that has block_threshold (5) of them. Probing a pair at the active
// interval with accepted proposals therefore took healthy pairs down within
// a second in the lab ("per-IP half-open IKE_SA limit of 5 reached"). So
// most probes offer ike.RefusedProposal: the peer answers NO_PROPOSAL_CHOSEN
// and keeps no state, which proves as much about reachability and RTT; a
// pair gets an accepted probe (the only one with NAT-D payloads, hence a NAT
// verdict) at most once per ikeFullEvery, and a local address at most
// ikeFullBudget of them per ikeHalfOpenLife, well under the limit.
const (
	ikeHalfOpenLife = 30 * time.Second
	ikeFullEvery    = 30 * time.Second
	ikeFullBudget   = 3
)

// ikeProber runs the IKE method's probes (its probe method is the
// probe.ProbeFunc); safe for concurrent use.
type ikeProber struct {
	now func() time.Time
	run func(context.Context, ike.Config) (ike.Result, error)

	mu       sync.Mutex
	lastFull map[mobike.Pair]time.Time  // the pair's last accepted-proposal probe
	sent     map[netip.Addr][]time.Time // accepted-proposal probes per local address, last ikeHalfOpenLife
}

func newIKEProber() *ikeProber {
	return &ikeProber{now: time.Now, run: ike.Probe, lastFull: map[mobike.Pair]time.Time{}, sent: map[netip.Addr][]time.Time{}}
}

// full reports whether pair's next probe may offer an acceptable proposal,
// and books it if so.
func (p *ikeProber) full(pair mobike.Pair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if last, ok := p.lastFull[pair]; ok && now.Sub(last) < ikeFullEvery {
		return false
	}
	recent := slices.DeleteFunc(p.sent[pair.Local], func(t time.Time) bool { return now.Sub(t) >= ikeHalfOpenLife })
	if len(recent) >= ikeFullBudget {
		p.sent[pair.Local] = recent
		return false
	}
	p.sent[pair.Local] = append(recent, now)
	p.lastFull[pair] = now
	if len(p.lastFull) > 4096 { // pairs come and go: forget the stale ones
		maps.DeleteFunc(p.lastFull, func(_ mobike.Pair, t time.Time) bool { return now.Sub(t) >= ikeFullEvery })
	}
	return true
}

// probe is the probe.ProbeFunc of the IKE method: one IKE_SA_INIT from the
// pair's local address (ephemeral port) through its uplink to the peer's
// port 500. A peer that answers, even with an error notify, is reachable.
func (p *ikeProber) probe(ctx context.Context, path probe.Path) (probe.Outcome, error) {
	cfg := ike.Config{
		Local:  netip.AddrPortFrom(path.Pair.Local, 0),
		Device: path.Uplink,
		Remote: netip.AddrPortFrom(path.Pair.Remote, ikePort),
	}
	if !p.full(path.Pair) {
		cfg.Proposals = []wire.Proposal{ike.RefusedProposal()}
	}
	res, err := p.run(ctx, cfg)
	if err != nil {
		return probe.Outcome{}, err
	}
	return probe.Outcome{OK: res.Reachable, RTT: res.RTT, NAT: res.NAT}, nil
}

// reflectorServer is a STAMP reflector with its socket.
type reflectorServer struct {
	r      *probe.Reflector
	conn   net.PacketConn
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// listenReflector binds the STAMP reflector's socket, so that a bad address
// or a port in use fails the start; serve answers on it. log is the daemon's
// logger (the reflector adds its component itself).
func listenReflector(addr netip.AddrPort, key []byte, log *slog.Logger) (*reflectorServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := probe.NewReflector(probe.ReflectorOptions{Logger: log, Key: key})
	if err != nil {
		return nil, err
	}
	c, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("stamp reflector: listen %s: %w", addr, err)
	}
	return &reflectorServer{r: r, conn: c, log: log.With("component", "stamp-reflector")}, nil
}

// start answers in the background until ctx is done or stop is called.
func (s *reflectorServer) start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.serve(ctx); err != nil {
			s.log.Error("stamp reflector stopped", "err", err)
		}
	}()
}

// stop ends the reflector and waits until its socket is closed (its port
// can be bound again).
func (s *reflectorServer) stop() {
	if s.cancel == nil {
		_ = s.conn.Close()
		return
	}
	s.cancel()
	<-s.done
}

// serve answers until ctx is done, then closes the socket and returns nil.
func (s *reflectorServer) serve(ctx context.Context) error {
	defer s.conn.Close()
	err := s.r.Serve(ctx, s.conn)
	if ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err())) {
		return nil
	}
	return err
}
