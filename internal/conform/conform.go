// Package conform is the MOBIKE conformance suite behind mobike-conform: a
// pure-Go IKEv2 initiator (mobike/proto driving the exchanges, mobike/ike
// for the cryptography, internal/ikeudp for the sockets) that establishes
// an IKE SA with a gateway and checks, one RFC 4555 requirement at a time,
// that the gateway negotiates MOBIKE, answers return-routability checks on
// every local×remote pair, accepts address updates (also through a NAT) and
// address lists, answers a retransmitted update from a second source with
// the stored response, and deletes cleanly.
//
// One goroutine (the caller of Run) owns the engines; the transport only
// moves datagrams.
package conform

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/mobiked/mobiked/internal/ikeudp"
	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/proto"
	"github.com/mobiked/mobiked/mobike/wire"
)

// Check IDs, in report order.
const (
	IDNegotiated  = "mobike-negotiated"
	IDAddressList = "address-list"
	IDRR          = "return-routability"
	IDUpdate      = "update-sa-addresses"
	IDListUpdate  = "address-list-update"
	IDRetransmit  = "update-retransmission"
	IDUpdateNAT   = "update-through-nat"
	IDNoNATs      = "no-nats-allowed"
	IDDelete      = "delete"
)

// Spec describes one check of the suite.
type Spec struct {
	ID      string
	Section string
	Level   Level
	What    string
}

// Specs is the suite, in report order.
var Specs = []Spec{
	{IDNegotiated, "RFC 4555 §3.2", MUST, "MOBIKE_SUPPORTED answered in IKE_AUTH"},
	{IDAddressList, "RFC 4555 §3.4", MAY, "the responder's address list (ADDITIONAL_*_ADDRESS or NO_ADDITIONAL_ADDRESSES) in IKE_AUTH"},
	{IDRR, "RFC 4555 §3.7", MUST, "an INFORMATIONAL with COOKIE2 and NAT-D on every local×remote pair answered on that pair with COOKIE2 echoed"},
	{IDUpdate, "RFC 4555 §3.5", MUST, "UPDATE_SA_ADDRESSES (NAT-D over the new addresses, COOKIE2) from another local address accepted, COOKIE2 echoed, and a later exchange on the new pair answered"},
	{IDListUpdate, "RFC 4555 §3.6", MUST, "an INFORMATIONAL carrying the initiator's address list accepted"},
	{IDRetransmit, "RFC 4555 §3.5, RFC 7296 §2.1", MUST, "an update request re-sent from a second source answered there with the identical stored response"},
	{IDUpdateNAT, "RFC 4555 §3.5, §3.8", MUST, "UPDATE_SA_ADDRESSES through a NATed path accepted, its NAT-D answer showing the NAT"},
	{IDNoNATs, "RFC 4555 §3.9", SHOULD, "UPDATE_SA_ADDRESSES with a NO_NATS_ALLOWED that a NAT made wrong answered with UNEXPECTED_NAT_DETECTED"},
	{IDDelete, "RFC 7296 §1.4.1", MUST, "Delete of the IKE SA answered"},
}

// Transport moves IKE messages; *ikeudp.Transport implements it.
type Transport interface {
	Local(a netip.Addr) (netip.AddrPort, bool)
	Send(src, dst netip.AddrPort, msg []byte) error
	Recv() <-chan ikeudp.Datagram
}

// Config configures a run.
type Config struct {
	Peers  []netip.Addr // gateway addresses; the IKE SA starts at the first
	Locals []netip.Addr // local addresses; the IKE SA starts at the first
	PSK    []byte
	ID     ike.ID
	// Child chooses childless or child-proposing IKE_AUTH (the tool never
	// installs ESP either way).
	Child     ike.ChildMode
	Proposals []wire.Proposal // ike.DefaultProposals() when empty
	// Timeout is the first retransmission interval (doubled on each try);
	// default 1s. Tries is the number of retransmissions; default 3.
	Timeout time.Duration
	Tries   int
	// Transport must have a socket for every local address.
	Transport Transport
	Rand      io.Reader // crypto/rand when nil
	Log       *slog.Logger
	// Clock is the time source; the wall clock when nil. Tests pass a
	// virtual one so retransmission timers cost no waiting.
	Clock Clock
}

// Clock is where a run reads the time and waits.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Result is what a run found: the report, and per IKE SA what an interop
// test needs to redo the key derivation and decrypt the captured messages.
type Result struct {
	Report Report
	SAs    []SARecord
}

// SARecord is one IKE SA of the run.
type SARecord struct {
	Name      string
	Secrets   ike.Secrets
	Datagrams []Datagram
}

// Datagram is one IKE message of the run as it crossed the wire.
type Datagram struct {
	Out      bool // sent by the suite
	Src, Dst netip.AddrPort
	Data     []byte
}

// ErrConfig is a configuration the suite cannot run with.
var ErrConfig = errors.New("conform: bad configuration")

func (c *Config) check() error {
	switch {
	case len(c.Peers) == 0:
		return fmt.Errorf("%w: no peer address", ErrConfig)
	case len(c.Locals) == 0:
		return fmt.Errorf("%w: no local address", ErrConfig)
	case len(c.PSK) == 0:
		return fmt.Errorf("%w: no pre-shared key", ErrConfig)
	case len(c.ID.Data) == 0:
		return fmt.Errorf("%w: no identity", ErrConfig)
	case c.Transport == nil:
		return fmt.Errorf("%w: no transport", ErrConfig)
	}
	for _, a := range c.Locals {
		if _, ok := c.Transport.Local(a); !ok {
			return fmt.Errorf("%w: no socket for local address %s", ErrConfig, a)
		}
		if a.Is4() != c.Peers[0].Is4() {
			return fmt.Errorf("%w: local %s and peer %s differ in family", ErrConfig, a, c.Peers[0])
		}
	}
	for _, p := range c.Peers {
		if p.Is4() != c.Peers[0].Is4() {
			return fmt.Errorf("%w: peers of both families", ErrConfig)
		}
	}
	return nil
}

// Run runs the suite. It returns an error only for a bad configuration, a
// dead transport or a cancelled context; everything the gateway does ends
// up in the report.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 3
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	d := &driver{cfg: cfg, log: cfg.Log, clock: cfg.Clock, sessions: map[wire.SPI]*session{}, res: &Result{Report: Report{Peer: cfg.Peers[0].String()}}}
	for _, s := range Specs {
		d.res.Report.Checks = append(d.res.Report.Checks, Check{ID: s.ID, Section: s.Section, Level: s.Level, Status: Skipped, Detail: "not run"})
	}
	err := d.run(ctx)
	for _, s := range d.all {
		s.cleanup(ctx)
		d.res.SAs = append(d.res.SAs, SARecord{Name: s.name, Secrets: s.in.Secrets(), Datagrams: s.capture})
	}
	if err != nil {
		return nil, err
	}
	return d.res, nil
}

type driver struct {
	cfg      Config
	clock    Clock
	log      *slog.Logger
	sessions map[wire.SPI]*session
	all      []*session
	res      *Result
	// per-pair return routability results, by pair
	rr map[proto.Pair]proto.PathTestResult
}

func (d *driver) set(id string, st Status, format string, args ...any) {
	for i := range d.res.Report.Checks {
		if d.res.Report.Checks[i].ID == id {
			d.res.Report.Checks[i].Status = st
			d.res.Report.Checks[i].Detail = fmt.Sprintf(format, args...)
		}
	}
}

func (d *driver) local(a netip.Addr) netip.AddrPort {
	ap, _ := d.cfg.Transport.Local(a)
	return ap
}

func natt(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, proto.IKEPortNATT) }

// errDead is a transport that stopped delivering.
var errDead = errors.New("conform: transport closed")

func (d *driver) run(ctx context.Context) error {
	cfg := d.cfg
	a, err := d.newSession("main", true)
	if err != nil {
		return err
	}
	l1, p1 := cfg.Locals[0], cfg.Peers[0]
	est, err := a.establish(ctx, proto.Pair{Local: d.local(l1), Remote: netip.AddrPortFrom(p1, ikeudp.IKEPort)})
	if err != nil {
		return err
	}
	if est == nil {
		why := a.closedWhy()
		if a.peer.CloseCause() == proto.CloseTimeout {
			why = "no answer from " + a.peer.IKEPair().Remote.String()
		}
		d.set(IDNegotiated, Fail, "no IKE SA: %s", why)
		d.skipRest(IDNegotiated, "no IKE SA")
		return nil
	}
	if !est.MOBIKE {
		d.set(IDNegotiated, Unsupported, "IKE_AUTH answered without MOBIKE_SUPPORTED (%s)", a.summary())
		d.skipRest(IDNegotiated, "MOBIKE not negotiated")
		return a.deleteQuietly(ctx)
	}
	d.set(IDNegotiated, Pass, "MOBIKE_SUPPORTED in IKE_AUTH; %s", a.summary())
	d.checkAddressList(a)

	if err := d.checkRR(ctx, a); err != nil {
		return err
	}
	natLocal, plainOther := d.natLocals()
	if err := d.checkUpdates(ctx, a, natLocal, plainOther); err != nil {
		return err
	}
	if err := d.checkListUpdate(ctx, a); err != nil {
		return err
	}
	if err := d.checkDelete(ctx, a); err != nil {
		return err
	}
	return d.checkNoNATs(ctx, natLocal)
}

// skipRest marks every check after id as skipped.
func (d *driver) skipRest(after, why string) {
	seen := false
	for i := range d.res.Report.Checks {
		c := &d.res.Report.Checks[i]
		if seen && c.Detail == "not run" {
			c.Status, c.Detail = Skipped, why
		}
		seen = seen || c.ID == after
	}
}

func (d *driver) checkAddressList(a *session) {
	resp := a.response(1)
	if resp == nil {
		d.set(IDAddressList, Skipped, "IKE_AUTH response not seen")
		return
	}
	var addrs []string
	none := false
	for _, n := range resp.msg.Notifies() {
		switch n.Type {
		case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
			if ad, err := n.Address(); err == nil {
				addrs = append(addrs, ad.String())
			} else {
				addrs = append(addrs, "malformed")
			}
		case wire.NotifyNoAdditionalAddresses:
			none = true
		}
	}
	switch {
	case len(addrs) > 0:
		d.set(IDAddressList, Pass, "ADDITIONAL_*_ADDRESS %s", strings.Join(addrs, ", "))
	case none:
		d.set(IDAddressList, Pass, "NO_ADDITIONAL_ADDRESSES")
	default:
		d.set(IDAddressList, Unsupported, "IKE_AUTH response carries no address list")
	}
}

// checkRR tests every local×remote pair with its own COOKIE2 request.
func (d *driver) checkRR(ctx context.Context, a *session) error {
	d.rr = map[proto.Pair]proto.PathTestResult{}
	var ok, bad, notes []string
	for _, l := range d.cfg.Locals {
		for _, p := range d.cfg.Peers {
			pair := proto.Pair{Local: d.local(l), Remote: natt(p)}
			name := l.String() + "->" + p.String()
			out, err := a.do(ctx, func(now time.Time) ([]proto.Output, error) { return a.peer.TestPaths(now, []proto.Pair{pair}) },
				func(o proto.Output) bool { _, ok := o.(proto.PathTestResult); return ok })
			if err != nil {
				return err
			}
			res, isRes := out.(proto.PathTestResult)
			switch {
			case !isRes:
				bad = append(bad, name+" (IKE SA closed: "+a.closedWhy()+")")
				d.set(IDRR, Fail, "%s", strings.Join(append(bad, ok...), "; "))
				d.skipRest(IDRR, "IKE SA closed: "+a.closedWhy())
				return nil
			case res.Restarted:
				// a single-pair test never restarts; be safe
				bad = append(bad, name+" (answer from another pair)")
			case !res.Passed && a.closed():
				bad = append(bad, name+" (no answer, and none on the IKE SA's own pair: IKE SA closed: "+a.closedWhy()+")")
				d.set(IDRR, Fail, "%s", strings.Join(append(bad, ok...), "; "))
				d.skipRest(IDRR, "IKE SA closed: "+a.closedWhy())
				return nil
			case !res.Passed && res.Pair.Local.IsValid():
				bad = append(bad, fmt.Sprintf("%s (answered on %s instead)", name, res.Pair))
			case !res.Passed:
				bad = append(bad, name+" (no answer on the pair)")
			default:
				d.rr[pair] = res
				note := ""
				switch {
				case !res.NATChecked:
					note = ", no NAT-D in the answer"
				case res.NATHere:
					note = ", NAT here"
				}
				if res.NATChecked && res.NATPeer {
					// strongSwan fakes this hash when it forces UDP
					// encapsulation (kernel-libipsec, encap = yes).
					note += ", peer's source hash differs"
				}
				ok = append(ok, name+note)
				if !res.NATChecked {
					notes = append(notes, name)
				}
			}
		}
	}
	detail := fmt.Sprintf("%d/%d pairs answered with COOKIE2 echoed: %s", len(ok), len(ok)+len(bad), strings.Join(ok, "; "))
	if len(bad) > 0 {
		d.set(IDRR, Fail, "%s; not answered: %s", detail, strings.Join(bad, "; "))
		return nil
	}
	d.set(IDRR, Pass, "%s", detail)
	return nil
}

// natLocals picks, from the return routability results towards the first
// peer, a local address behind a NAT and one not behind a NAT other than
// the first local.
func (d *driver) natLocals() (natLocal, plainOther netip.Addr) {
	p1 := d.cfg.Peers[0]
	for _, l := range d.cfg.Locals {
		res, ok := d.rr[proto.Pair{Local: d.local(l), Remote: natt(p1)}]
		if !ok || !res.NATChecked {
			continue
		}
		if res.NATHere && !natLocal.IsValid() {
			natLocal = l
		}
		if !res.NATHere && l != d.cfg.Locals[0] && !plainOther.IsValid() {
			plainOther = l
		}
	}
	return natLocal, plainOther
}

// natdMissing reports whether a return routability answer lacked NAT-D.
func (d *driver) natdMissing() bool {
	for _, r := range d.rr {
		if !r.NATChecked {
			return true
		}
	}
	return false
}

// update moves the IKE SA to pair and waits for the answer.
func (s *session) update(ctx context.Context, pair proto.Pair) (proto.Output, error) {
	return s.do(ctx, func(now time.Time) ([]proto.Output, error) { return s.peer.UpdateAddresses(now, pair) },
		func(o proto.Output) bool {
			switch o.(type) {
			case proto.UpdateConfirmed, proto.UpdateRejected:
				return true
			}
			return false
		})
}

func (d *driver) checkUpdates(ctx context.Context, a *session, natLocal, plainOther netip.Addr) error {
	cfg := d.cfg
	p1 := natt(cfg.Peers[0])
	if len(cfg.Locals) < 2 {
		d.set(IDUpdate, Skipped, "needs a second local address (--local A,B)")
		d.set(IDRetransmit, Skipped, "needs a second local address (--local A,B)")
		if natLocal.IsValid() {
			d.set(IDUpdateNAT, Skipped, "needs a second local address (--local A,B)")
		} else {
			d.set(IDUpdateNAT, Skipped, "no NAT on any pair")
		}
		return nil
	}
	target := plainOther
	if !target.IsValid() {
		target = cfg.Locals[1]
	}
	if a.closed() {
		d.set(IDUpdate, Skipped, "IKE SA closed: %s", a.closedWhy())
		return nil
	}
	// update-sa-addresses
	pair := proto.Pair{Local: d.local(target), Remote: p1}
	natThroughUpdate := false
	out, err := a.update(ctx, pair)
	if err != nil {
		return err
	}
	switch o := out.(type) {
	case proto.UpdateConfirmed:
		here, _ := a.peer.NAT()
		natThroughUpdate = here
		natd := "NAT-D answered"
		if r := a.response(o.MsgID); r == nil || r.msg.Notify(wire.NotifyNATDetectionDestinationIP) == nil {
			natd = "no NAT-D in the answer"
		} else if here {
			natd += " (NAT here)"
		} else {
			natd += " (no NAT)"
		}
		later, err := a.do(ctx, func(now time.Time) ([]proto.Output, error) { return a.peer.TestPaths(now, []proto.Pair{pair}) },
			func(o proto.Output) bool { _, ok := o.(proto.PathTestResult); return ok })
		if err != nil {
			return err
		}
		if res, ok := later.(proto.PathTestResult); ok && res.Passed {
			d.set(IDUpdate, Pass, "#%d from %s accepted, COOKIE2 echoed, %s; #%d on the new pair answered", o.MsgID, target, natd, res.MsgID)
		} else {
			d.set(IDUpdate, Fail, "#%d from %s accepted (%s) but the next INFORMATIONAL on the new pair was not answered", o.MsgID, target, natd)
		}
	case proto.UpdateRejected:
		d.set(IDUpdate, Fail, "#%d from %s refused: %s", o.MsgID, target, o.Reason)
	default:
		d.set(IDUpdate, Fail, "UPDATE_SA_ADDRESSES from %s: %s", target, a.closedDetail())
		d.skipRest(IDUpdate, "IKE SA closed: "+a.closedWhy())
		return nil
	}

	// update-through-nat
	switch {
	case !natLocal.IsValid() && d.natdMissing():
		d.set(IDUpdateNAT, Fail, "no return routability answer carried NAT-D (RFC 4555 §3.8: the responder MUST answer NAT-D), so a NAT cannot be seen")
	case !natLocal.IsValid():
		d.set(IDUpdateNAT, Skipped, "no NAT on any pair towards %s", cfg.Peers[0])
	case natLocal == target && natThroughUpdate:
		d.set(IDUpdateNAT, Pass, "the update from %s went through the NAT; the NAT-D answer shows it", target)
	default:
		out, err := a.update(ctx, proto.Pair{Local: d.local(natLocal), Remote: p1})
		if err != nil {
			return err
		}
		switch o := out.(type) {
		case proto.UpdateConfirmed:
			if here, _ := a.peer.NAT(); here {
				d.set(IDUpdateNAT, Pass, "#%d from %s through the NAT accepted; the NAT-D answer shows the NAT", o.MsgID, natLocal)
			} else if r := a.response(o.MsgID); r == nil || r.msg.Notify(wire.NotifyNATDetectionDestinationIP) == nil {
				d.set(IDUpdateNAT, Fail, "#%d from %s accepted without NAT-D in the answer", o.MsgID, natLocal)
			} else {
				d.set(IDUpdateNAT, Fail, "#%d from %s accepted but its NAT-D shows no NAT", o.MsgID, natLocal)
			}
		case proto.UpdateRejected:
			d.set(IDUpdateNAT, Fail, "#%d from %s refused: %s", o.MsgID, natLocal, o.Reason)
		default:
			d.set(IDUpdateNAT, Fail, "update from %s: %s", natLocal, a.closedDetail())
			d.skipRest(IDUpdateNAT, "IKE SA closed: "+a.closedWhy())
			return nil
		}
	}
	return d.checkRetransmit(ctx, a)
}

// checkRetransmit moves the IKE SA back to the first local address, then
// re-sends that update's request bytes from the address it left (a second
// source) and compares the answer with the first one.
func (d *driver) checkRetransmit(ctx context.Context, a *session) error {
	cfg := d.cfg
	from := a.peer.IKEPair()
	back := proto.Pair{Local: d.local(cfg.Locals[0]), Remote: from.Remote}
	if back.Local == from.Local {
		back.Local = d.local(cfg.Locals[1])
	}
	out, err := a.update(ctx, back)
	if err != nil {
		return err
	}
	o, ok := out.(proto.UpdateConfirmed)
	if !ok {
		d.set(IDRetransmit, Fail, "update from %s not accepted: %v", back.Local.Addr(), out)
		if a.closed() {
			d.skipRest(IDRetransmit, "IKE SA closed: "+a.closedWhy())
		}
		return nil
	}
	req, first := a.reqs[o.MsgID], a.response(o.MsgID)
	if req == nil || first == nil {
		d.set(IDRetransmit, Skipped, "update #%d not captured", o.MsgID)
		return nil
	}
	// Like a real retransmission, the copy goes out after a pause and is
	// repeated on the engine's schedule: a responder may drop a copy that
	// arrives while it still processes the original (charon: "ignoring
	// request with ID n, already processing").
	second := from.Local
	answered := func() bool { return a.responseTo(o.MsgID, second.Addr()) != nil }
	pause, sent := d.cfg.Timeout/2, 0
	for ; sent <= d.cfg.Tries && !answered(); sent++ {
		if err := a.pump(ctx, pause, answered); err != nil && !errors.Is(err, errWait) {
			return err
		}
		if answered() {
			break
		}
		if err := a.send(second, back.Remote, req); err != nil {
			return err
		}
		pause = d.cfg.Timeout
	}
	if err := a.pump(ctx, d.cfg.Timeout, answered); err != nil && !errors.Is(err, errWait) {
		return err
	}
	got := a.responseTo(o.MsgID, second.Addr())
	switch {
	case got == nil:
		d.set(IDRetransmit, Fail, "request #%d re-sent %d times from %s: no answer there", o.MsgID, sent, second.Addr())
	case !bytes.Equal(got.raw, first.raw):
		d.set(IDRetransmit, Fail, "request #%d re-sent from %s answered with different bytes (%d vs %d octets): not the stored response", o.MsgID, second.Addr(), len(got.raw), len(first.raw))
	default:
		d.set(IDRetransmit, Pass, "request #%d re-sent from %s (%s) answered there with the identical %d-octet response", o.MsgID, second.Addr(), copies(sent), len(got.raw))
	}
	return nil
}

func (d *driver) checkListUpdate(ctx context.Context, a *session) error {
	if a.closed() {
		d.set(IDListUpdate, Skipped, "IKE SA closed: %s", a.closedWhy())
		return nil
	}
	out, err := a.do(ctx, func(now time.Time) ([]proto.Output, error) { return a.peer.SetLocalAddrs(now, d.cfg.Locals), nil },
		func(o proto.Output) bool { _, ok := o.(proto.AddressListAcknowledged); return ok })
	if err != nil {
		return err
	}
	list := "NO_ADDITIONAL_ADDRESSES"
	if len(d.cfg.Locals) > 1 {
		var s []string
		for _, l := range d.cfg.Locals {
			if l != a.peer.IKEPair().Local.Addr() {
				s = append(s, l.String())
			}
		}
		list = "ADDITIONAL_*_ADDRESS " + strings.Join(s, ", ")
	}
	switch o := out.(type) {
	case proto.AddressListAcknowledged:
		if o.Error != 0 {
			d.set(IDListUpdate, Fail, "#%d with %s refused: %s", o.MsgID, list, o.Error)
		} else {
			d.set(IDListUpdate, Pass, "#%d with %s acknowledged", o.MsgID, list)
		}
	default:
		d.set(IDListUpdate, Fail, "address list: %s", a.closedDetail())
	}
	return nil
}

func (d *driver) checkDelete(ctx context.Context, a *session) error {
	if a.closed() {
		d.set(IDDelete, Skipped, "IKE SA closed before: %s", a.closedWhy())
		return nil
	}
	if _, err := a.do(ctx, func(now time.Time) ([]proto.Output, error) { return a.peer.Delete(now) }, nil); err != nil {
		return err
	}
	switch a.peer.CloseCause() {
	case proto.CloseDeleted:
		d.set(IDDelete, Pass, "Delete (IKE) answered")
	default:
		d.set(IDDelete, Fail, "Delete (IKE): %s", a.closedWhy())
	}
	return nil
}

// checkNoNATs runs a second IKE SA without NAT traversal, so every
// address-changing request carries NO_NATS_ALLOWED (M53), and sends an
// update through the NAT: the NAT makes the notify wrong.
func (d *driver) checkNoNATs(ctx context.Context, natLocal netip.Addr) error {
	if !natLocal.IsValid() {
		d.set(IDNoNATs, Skipped, "no NAT on any pair towards %s", d.cfg.Peers[0])
		return nil
	}
	start := natLocal
	for _, l := range d.cfg.Locals {
		if res, ok := d.rr[proto.Pair{Local: d.local(l), Remote: natt(d.cfg.Peers[0])}]; ok && res.NATChecked && !res.NATHere {
			start = l
			break
		}
	}
	b, err := d.newSession("no-nats", false)
	if err != nil {
		return err
	}
	p1 := netip.AddrPortFrom(d.cfg.Peers[0], ikeudp.IKEPort)
	est, err := b.establish(ctx, proto.Pair{Local: d.local(start), Remote: p1})
	if err != nil {
		return err
	}
	if start == natLocal {
		// IKE_AUTH itself carried the wrong NO_NATS_ALLOWED.
		switch {
		case b.peer.CloseCause() == proto.CloseUnexpectedNAT:
			d.set(IDNoNATs, Pass, "IKE_AUTH from %s (NATed) answered with UNEXPECTED_NAT_DETECTED", start)
		case est != nil:
			d.set(IDNoNATs, Fail, "IKE_AUTH with a NO_NATS_ALLOWED the NAT made wrong accepted: NO_NATS_ALLOWED not checked")
		default:
			d.set(IDNoNATs, Fail, "IKE SA without NAT-T from %s: %s", start, b.closedWhy())
		}
		return b.deleteQuietly(ctx)
	}
	if est == nil {
		d.set(IDNoNATs, Fail, "IKE SA without NAT-T from %s: %s", start, b.closedWhy())
		return nil
	}
	if !est.MOBIKE {
		d.set(IDNoNATs, Skipped, "MOBIKE not negotiated without NAT-T")
		return b.deleteQuietly(ctx)
	}
	out, err := b.do(ctx, func(now time.Time) ([]proto.Output, error) {
		return b.peer.UpdateAddresses(now, proto.Pair{Local: d.local(natLocal), Remote: p1})
	}, func(o proto.Output) bool {
		switch o.(type) {
		case proto.UnexpectedNAT, proto.UpdateConfirmed, proto.UpdateRejected:
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	switch o := out.(type) {
	case proto.UnexpectedNAT:
		d.set(IDNoNATs, Pass, "#%d from %s (NATed) answered with UNEXPECTED_NAT_DETECTED", o.MsgID, natLocal)
	case proto.UpdateConfirmed:
		d.set(IDNoNATs, Fail, "#%d from %s through the NAT accepted: NO_NATS_ALLOWED (%s) not checked",
			o.MsgID, natLocal, proto.Pair{Local: d.local(natLocal), Remote: p1})
	case proto.UpdateRejected:
		d.set(IDNoNATs, Fail, "#%d from %s refused with %s instead of UNEXPECTED_NAT_DETECTED", o.MsgID, natLocal, o.Reason)
	default:
		d.set(IDNoNATs, Fail, "update from %s: %s", natLocal, b.closedDetail())
	}
	return b.deleteQuietly(ctx)
}

func copies(n int) string {
	if n == 1 {
		return "1 copy"
	}
	return fmt.Sprintf("%d copies", n)
}
