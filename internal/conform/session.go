package conform

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/proto"
	"github.com/mobiked/mobiked/mobike/wire"
)

// session is one IKE SA of the suite: the engine, its cryptography, and
// what crossed the wire.
type session struct {
	d    *driver
	name string
	peer *proto.Peer
	in   *ike.Initiator
	obs  []proto.Output    // every output but Send
	reqs map[uint32][]byte // our requests as sent, by Message ID
	// responses to our requests as received, by Message ID, in order
	resps   map[uint32][]rx
	capture []Datagram
}

type rx struct {
	raw      []byte
	msg      *wire.Message
	src, dst netip.AddrPort
}

func (d *driver) newSession(name string, natt bool) (*session, error) {
	cfg := d.cfg
	in, err := ike.NewInitiator(ike.Config{Rand: cfg.Rand, PSK: cfg.PSK, ID: cfg.ID, Proposals: cfg.Proposals, Child: cfg.Child})
	if err != nil {
		return nil, err
	}
	p, err := proto.New(proto.Config{Role: proto.Initiator, MOBIKE: true, NATT: natt, Rand: cfg.Rand, Crypto: in,
		KeepLocalPort: true, LocalAddrs: cfg.Locals, RetransmitTimeout: cfg.Timeout, RetransmitTries: cfg.Tries, ProbeTries: 2})
	if err != nil {
		return nil, err
	}
	s := &session{d: d, name: name, peer: p, in: in, reqs: map[uint32][]byte{}, resps: map[uint32][]rx{}}
	d.all = append(d.all, s)
	return s, nil
}

// establish runs IKE_SA_INIT and IKE_AUTH on pair; nil means the SA did not
// come up (closedWhy says why).
func (s *session) establish(ctx context.Context, pair proto.Pair) (*proto.Established, error) {
	outs, err := s.peer.Start(s.d.clock.Now(), pair)
	spiI, _ := s.peer.SPIs()
	s.d.sessions[spiI] = s
	s.apply(outs)
	if err != nil && !errors.Is(err, proto.ErrClosed) {
		return nil, err
	}
	out, err := s.wait(ctx, func(o proto.Output) bool { _, ok := o.(proto.Established); return ok })
	if err != nil {
		return nil, err
	}
	if e, ok := out.(proto.Established); ok {
		return &e, nil
	}
	return nil, nil
}

// do runs an engine call and waits for an output matching want (any output
// when want is nil waits until the SA closes or nothing is outstanding). It
// returns the matching output, or the SAClosed output.
func (s *session) do(ctx context.Context, call func(now time.Time) ([]proto.Output, error), want func(proto.Output) bool) (proto.Output, error) {
	mark := len(s.obs)
	outs, err := call(s.d.clock.Now())
	if err != nil {
		if c, why := s.peer.Closed(); c {
			return proto.SAClosed{Cause: s.peer.CloseCause(), Reason: why}, nil
		}
		return nil, fmt.Errorf("conform: %s: %w", s.name, err)
	}
	s.apply(outs)
	if want == nil {
		want = func(proto.Output) bool { return false }
	}
	return s.waitFrom(ctx, mark, want)
}

func (s *session) wait(ctx context.Context, want func(proto.Output) bool) (proto.Output, error) {
	return s.waitFrom(ctx, 0, want)
}

// errWait is a pump that ran out of time.
var errWait = errors.New("conform: wait timed out")

// maxWait bounds any wait; the engine's own retransmission budget ends
// every exchange well before.
const maxWait = 5 * time.Minute

func (s *session) waitFrom(ctx context.Context, mark int, want func(proto.Output) bool) (proto.Output, error) {
	var found proto.Output
	check := func() bool {
		for _, o := range s.obs[mark:] {
			if want(o) {
				found = o
				return true
			}
			if _, ok := o.(proto.SAClosed); ok {
				found = o
				return true
			}
		}
		_, busy := s.peer.NextDeadline()
		return !busy && s.closed()
	}
	if err := s.pump(ctx, maxWait, check); err != nil {
		return nil, err
	}
	return found, nil
}

// pump delivers datagrams and fires timers of every session until cond
// holds or limit passes (errWait). Datagrams already received go first, so a
// virtual clock never jumps past an answer that is there.
func (s *session) pump(ctx context.Context, limit time.Duration, cond func() bool) error {
	d := s.d
	recv := d.cfg.Transport.Recv()
	end := d.clock.Now().Add(limit)
	for !cond() {
		select {
		case dg, ok := <-recv:
			if !ok {
				return errDead
			}
			d.deliver(dg.Src, dg.Dst, dg.Data)
			continue
		default:
		}
		next := end
		for _, x := range d.all {
			if t, ok := x.peer.NextDeadline(); ok && t.Before(next) {
				next = t
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case dg, ok := <-recv:
			if !ok {
				return errDead
			}
			d.deliver(dg.Src, dg.Dst, dg.Data)
		case <-d.clock.After(next.Sub(d.clock.Now())):
			now := d.clock.Now()
			for _, x := range d.all {
				if t, ok := x.peer.NextDeadline(); ok && !t.After(now) {
					x.apply(x.peer.OnTimer(now))
				}
			}
			if !now.Before(end) && !cond() {
				return errWait
			}
		}
	}
	return nil
}

// deliver hands one received IKE message to the session it belongs to.
func (d *driver) deliver(src, dst netip.AddrPort, b []byte) {
	h, err := wire.PeekHeader(b)
	if err != nil {
		d.log.Debug("conform: not an IKE message", "src", src, "err", err)
		return
	}
	s := d.sessions[h.SPIi]
	if s == nil {
		d.log.Debug("conform: message of an unknown IKE SA", "src", src, "spi", h.SPIi)
		return
	}
	s.capture = append(s.capture, Datagram{Src: src, Dst: dst, Data: b})
	m, err := s.in.Open(b)
	if err != nil {
		d.log.Warn("conform: cannot open message", "sa", s.name, "src", src, "mid", h.MessageID, "err", err)
		return
	}
	d.log.Debug("conform: received", "sa", s.name, "src", src, "dst", dst, "msg", proto.FormatMessage(m))
	if m.IsResponse() {
		s.resps[m.MessageID] = append(s.resps[m.MessageID], rx{raw: b, msg: m, src: src, dst: dst})
	}
	s.apply(s.peer.Handle(d.clock.Now(), proto.Packet{Src: src, Dst: dst, Msg: m, Raw: b}))
}

func (s *session) apply(outs []proto.Output) {
	for _, o := range outs {
		snd, ok := o.(proto.Send)
		if !ok {
			s.d.log.Debug("conform: engine", "sa", s.name, "out", o.String())
			s.obs = append(s.obs, o)
			continue
		}
		if !snd.Msg.IsResponse() {
			s.reqs[snd.Msg.MessageID] = snd.Raw
		}
		s.d.log.Debug("conform: send", "sa", s.name, "src", snd.Src, "dst", snd.Dst, "msg", proto.FormatMessage(snd.Msg))
		if err := s.send(snd.Src, snd.Dst, snd.Raw); err != nil {
			s.d.log.Warn("conform: send", "sa", s.name, "err", err)
		}
	}
}

func (s *session) send(src, dst netip.AddrPort, b []byte) error {
	s.capture = append(s.capture, Datagram{Out: true, Src: src, Dst: dst, Data: b})
	return s.d.cfg.Transport.Send(src, dst, b)
}

// response is the first response to our request mid.
func (s *session) response(mid uint32) *rx {
	if r := s.resps[mid]; len(r) > 0 {
		return &r[0]
	}
	return nil
}

// responseTo is a response to mid that arrived on local address a.
func (s *session) responseTo(mid uint32, a netip.Addr) *rx {
	for i, r := range s.resps[mid] {
		if r.dst.Addr() == a {
			return &s.resps[mid][i]
		}
	}
	return nil
}

func (s *session) closed() bool { c, _ := s.peer.Closed(); return c }

func (s *session) closedWhy() string {
	c, why := s.peer.Closed()
	if !c {
		return "still up"
	}
	return strings.TrimPrefix(why, "proto: ")
}

// closedDetail says in words why the SA closed during an exchange.
func (s *session) closedDetail() string {
	switch s.peer.CloseCause() {
	case proto.CloseCookie2Mismatch:
		return "the answer did not echo our COOKIE2, so the IKE SA was closed (RFC 4555 §3.7)"
	case proto.CloseTimeout:
		return "no answer; IKE SA given up after retransmissions"
	case proto.CloseInvalidSyntax:
		return "answered INVALID_SYNTAX; IKE SA closed"
	}
	return "IKE SA closed: " + s.closedWhy()
}

func (s *session) summary() string {
	parts := []string{s.in.Suite().String(), "peer id " + s.in.PeerID().String()}
	switch c := s.in.Child(); {
	case !c.Proposed:
		parts = append(parts, "childless (RFC 6023)")
	case c.Accepted != nil:
		parts = append(parts, "CHILD_SA accepted (not installed)")
	case c.Error != 0:
		parts = append(parts, "CHILD_SA refused: "+c.Error.String())
	}
	if r := s.in.Retries(); r > 0 {
		parts = append(parts, fmt.Sprintf("%d IKE_SA_INIT retries", r))
	}
	return strings.Join(parts, ", ")
}

// deleteQuietly deletes an established SA and waits for the answer.
func (s *session) deleteQuietly(ctx context.Context) error {
	if !s.peer.Established() {
		return nil
	}
	_, err := s.do(ctx, func(now time.Time) ([]proto.Output, error) { return s.peer.Delete(now) }, nil)
	if errors.Is(err, errWait) {
		return nil
	}
	return err
}

// cleanup deletes an SA a failed step left up, so the gateway keeps no
// half-used SA around; bounded, best effort.
func (s *session) cleanup(ctx context.Context) {
	if !s.peer.Established() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*s.d.cfg.Timeout)
	defer cancel()
	_ = s.deleteQuietly(ctx)
}
