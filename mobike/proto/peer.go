package proto

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Errors returned by the Initiate-style entry points.
var (
	ErrNotEstablished = errors.New("proto: ike sa not established")
	ErrNoMOBIKE       = errors.New("proto: mobike not negotiated")
	ErrRole           = errors.New("proto: not allowed in this role")
	ErrBusy           = errors.New("proto: a path test is already running")
	ErrBadPair        = errors.New("proto: invalid address pair")
	ErrClosed         = errors.New("proto: ike sa closed")
)

// IKEPortNATT is the port both peers float to when they support MOBIKE and
// NAT-T (M6, B10).
const IKEPortNATT = 4500

// Config is the static configuration of a Peer. Zero values take the
// defaults noted per field.
type Config struct {
	Role Role
	// MOBIKE sends MOBIKE_SUPPORTED in IKE_AUTH (M2).
	MOBIKE bool
	// NATT enables NAT traversal: NAT-D in IKE_SA_INIT and in address
	// updates. Without it NO_NATS_ALLOWED is sent in IKE_AUTH and in every
	// address-changing INFORMATIONAL (M53).
	NATT bool
	// RequireRR requires a return routability check (COOKIE2) of a peer
	// address before the IPsec SAs are moved to it (M11, M22, M39, M40).
	RequireRR bool
	// Accept is the responder's policy for an updated (local, remote)
	// address pair (M19); nil accepts every pair.
	Accept func(local, remote netip.Addr) bool
	// Window is the IKE window size of both peers (B4); default 1.
	Window uint32
	// Rand is the source of SPIs and COOKIE2 values (crypto/rand in
	// production). Required.
	Rand io.Reader
	// Cookie2Len is the COOKIE2 length, 8..64; default 16 (M42).
	Cookie2Len int
	// RetransmitTimeout is the first retransmission interval, doubled on
	// each retransmission (B6); default 2s.
	RetransmitTimeout time.Duration
	// RetransmitTries is the number of retransmissions before a request is
	// given up and the IKE SA declared dead (B6); default 5.
	RetransmitTries int
	// ProbeTries is how many transmissions a path test makes on each
	// candidate pair before moving on to the next one (M58); default 2.
	ProbeTries int
	// DPDInterval starts a liveness check after this long without a packet
	// on the current pair (RFC 4621 §5.5.2); 0 disables DPD.
	DPDInterval time.Duration
	// MaxAdditional bounds the addresses sent and accepted in a list (M38);
	// default 8.
	MaxAdditional int
	// MaxMovesPerMinute bounds how often the responder lets the initiator
	// move the IKE SA to a new address; beyond it updates are answered with
	// UNACCEPTABLE_ADDRESSES (M70, §5.3). 0 means no limit.
	MaxMovesPerMinute int
	// LocalAddrs is the peer's own address set (announced with
	// ADDITIONAL_*_ADDRESS, M7, M31).
	LocalAddrs []netip.Addr
	// Crypto makes the exchanges real (see Crypto); initiator role only.
	Crypto Crypto
	// KeepLocalPort keeps the local port when the IKE SA floats to the NAT-T
	// port (M6): only the remote port becomes 4500. For an initiator on an
	// ephemeral port; by default both ends float.
	KeepLocalPort bool
}

func (c *Config) defaults() {
	if c.Window == 0 {
		c.Window = 1
	}
	if c.Cookie2Len == 0 {
		c.Cookie2Len = 16
	}
	c.Cookie2Len = min(max(c.Cookie2Len, wire.MinCookie2Len), wire.MaxCookie2Len)
	if c.RetransmitTimeout == 0 {
		c.RetransmitTimeout = 2 * time.Second
	}
	if c.RetransmitTries == 0 {
		c.RetransmitTries = 5
	}
	if c.ProbeTries == 0 {
		c.ProbeTries = 2
	}
	if c.MaxAdditional == 0 {
		c.MaxAdditional = 8
	}
}

type saState uint8

const (
	stIdle saState = iota
	stInitSent
	stInitDone // responder: IKE_SA_INIT answered
	stAuthSent
	stEstablished
	stClosed
)

type reqKind uint8

const (
	kInit reqKind = iota
	kAuth
	kUpdate
	kList
	kProbe
	kRR
	kDPD
	kDelete
)

// request is one outstanding request of ours.
type request struct {
	kind    reqKind
	msg     *wire.Message
	raw     []byte // msg as encoded by Config.Crypto (B5)
	cookie2 []byte
	addrGen uint64
	pair    Pair // fixed pair (IKE_SA_INIT, IKE_AUTH); others follow the IKE SA (M13)
	follow  bool
	// path test: candidate pairs walked in order before falling back to the
	// IKE SA pair.
	cands     []Pair
	candIdx   int
	candTries int
	sentOn    map[Pair]bool
	dsts      map[netip.AddrPort]bool
	srcs      map[netip.Addr]bool
	tries     int
	next      time.Time
	list      bool           // carries the address list (M35)
	rrTarget  netip.AddrPort // return routability target (M22)
}

// Peer is one endpoint of one IKE SA. It is not safe for concurrent use.
type Peer struct {
	cfg   Config
	state saState

	spiI, spiR wire.SPI
	localAddrs []netip.Addr

	ike       Pair // IKE SA addresses
	confirmed Pair // last pair the peer agreed to (revert target, M26)
	traffic   Pair // IPsec SA outer addresses
	encap     bool
	mobike    bool
	peerNATT  bool
	natHere   bool
	natPeer   bool
	dstRef    [20]byte // NAT_DETECTION_DESTINATION_IP of the last update reply (M30, M49)
	haveRef   bool
	peerAddrs []netip.Addr
	verified  map[netip.AddrPort]bool // peer addresses that passed return routability
	addrGen   uint64                  // bumped on every IKE SA pair change (M15, M28)
	lastAlive time.Time

	pendingUpdate bool
	pendingList   bool
	pendingRR     bool
	pendingProbe  []Pair
	probeActive   bool
	pendingDelete bool
	natRetries    int

	nextMID uint32
	out     map[uint32]*request

	recvNext      uint32
	processed     map[uint32]bool
	stored        map[uint32]*wire.Message
	storedRaw     map[uint32][]byte
	lastUpdateMID uint32
	haveUpdateMID bool
	lastListMID   uint32
	haveListMID   bool

	moves []time.Time // responder: accepted moves in the last minute (M70)

	closeReason string
	closeCause  CloseCause
}

// New returns a Peer for cfg.
func New(cfg Config) (*Peer, error) {
	if cfg.Role != Initiator && cfg.Role != Responder {
		return nil, fmt.Errorf("proto: new peer: %w", ErrRole)
	}
	if cfg.Rand == nil {
		return nil, errors.New("proto: new peer: no random source")
	}
	if cfg.Crypto != nil && cfg.Role != Initiator {
		return nil, fmt.Errorf("proto: new peer: crypto for the %s: %w", cfg.Role, ErrRole)
	}
	cfg.defaults()
	p := &Peer{
		cfg:       cfg,
		verified:  map[netip.AddrPort]bool{},
		out:       map[uint32]*request{},
		processed: map[uint32]bool{},
		stored:    map[uint32]*wire.Message{},
		storedRaw: map[uint32][]byte{},
	}
	p.localAddrs = normAddrs(cfg.LocalAddrs, cfg.MaxAdditional+1)
	return p, nil
}

// Role returns the MOBIKE role.
func (p *Peer) Role() Role { return p.cfg.Role }

// Established reports whether IKE_AUTH has completed and the SA is not closed.
func (p *Peer) Established() bool { return p.state == stEstablished }

// Closed reports whether the IKE SA is gone, and why.
func (p *Peer) Closed() (bool, string) { return p.state == stClosed, p.closeReason }

// CloseCause is why the IKE SA closed (0 while it is not closed).
func (p *Peer) CloseCause() CloseCause { return p.closeCause }

// MOBIKE reports whether MOBIKE was negotiated (M2).
func (p *Peer) MOBIKE() bool { return p.mobike }

// IKEPair returns the IKE SA's current address pair.
func (p *Peer) IKEPair() Pair { return p.ike }

// TrafficPair returns the IPsec SAs' outer address pair and whether ESP is
// UDP-encapsulated.
func (p *Peer) TrafficPair() (Pair, bool) { return p.traffic, p.encap }

// PeerAddrs returns a copy of the peer's address set (M33).
func (p *Peer) PeerAddrs() []netip.Addr { return slices.Clone(p.peerAddrs) }

// NAT returns the NAT detection state of the IKE SA pair: here means this
// peer is behind a NAT, peer that the other one is.
func (p *Peer) NAT() (here, peer bool) { return p.natHere, p.natPeer }

// Verified reports whether a peer address passed return routability.
func (p *Peer) Verified(a netip.AddrPort) bool { return p.verified[a] }

// Keepalive returns the pair on which NAT-keepalives (a UDP datagram with
// the single octet 0xFF, RFC 3948) must be sent: only by a peer behind a
// NAT, only on the pair the IPsec SAs use (M52, B12).
func (p *Peer) Keepalive() (Pair, bool) {
	return p.traffic, p.state == stEstablished && p.encap && p.natHere
}

// SPIs returns the IKE SA's SPIs.
func (p *Peer) SPIs() (spiI, spiR wire.SPI) { return p.spiI, p.spiR }

// LastAlive is the time of the last packet seen on the current pair.
func (p *Peer) LastAlive() time.Time { return p.lastAlive }

type outs []Output

func (o *outs) add(x Output) { *o = append(*o, x) }

// Start makes the initiator send IKE_SA_INIT on pair (M4).
func (p *Peer) Start(now time.Time, pair Pair) ([]Output, error) {
	if p.cfg.Role != Initiator || p.state != stIdle {
		return nil, fmt.Errorf("proto: start: %w", ErrRole)
	}
	if !pair.Local.IsValid() || !pair.Remote.IsValid() {
		return nil, fmt.Errorf("proto: start: %w", ErrBadPair)
	}
	var o outs
	if err := p.readRand(p.spiI[:]); err != nil {
		return nil, fmt.Errorf("proto: start: %w", err)
	}
	if p.spiI.IsZero() {
		p.spiI[7] = 1 // never zero
	}
	p.state = stInitSent
	p.ike = pair
	p.sendInit(now, &o)
	if p.state == stClosed {
		return o, fmt.Errorf("proto: start: %s: %w", p.closeReason, ErrClosed)
	}
	return o, nil
}

// sendInit sends an IKE_SA_INIT request (Message ID 0) on the IKE SA pair.
func (p *Peer) sendInit(now time.Time, o *outs) {
	pair := p.ike
	var pl []wire.Payload
	if p.cfg.NATT {
		// B10: NAT-D in IKE_SA_INIT, SPIr still zero.
		pl = append(pl, wire.NATDetectionSource(p.spiI, p.spiR, pair.Local),
			wire.NATDetectionDestination(p.spiI, p.spiR, pair.Remote))
	}
	if p.cfg.Crypto != nil {
		var err error
		if pl, err = p.cfg.Crypto.InitRequest(p.spiI, pl); err != nil {
			p.close(o, CloseInternal, "ike_sa_init request: "+err.Error())
			return
		}
	}
	p.nextMID = 0
	r := &request{kind: kInit, pair: pair, msg: p.newRequest(wire.ExchangeIKESAInit, pl)}
	p.sendRequest(now, r, o)
}

// Delete deletes the IKE SA (B2): an INFORMATIONAL request with a Delete
// payload, sent when the window allows. The SA closes with CloseDeleted when
// it is answered (or CloseTimeout when it is not).
func (p *Peer) Delete(now time.Time) ([]Output, error) {
	if p.state != stEstablished {
		return nil, fmt.Errorf("proto: delete: %w", ErrNotEstablished)
	}
	var o outs
	p.pendingDelete = true
	p.flush(now, &o)
	return o, nil
}

// UpdateAddresses makes the initiator move the IKE SA to pair and announce
// it with UPDATE_SA_ADDRESSES (M10–M14). The IPsec SAs move now unless
// return routability of pair.Remote must be checked first (M11, M29).
func (p *Peer) UpdateAddresses(now time.Time, pair Pair) ([]Output, error) {
	if err := p.canSteer("update addresses"); err != nil {
		return nil, err
	}
	if !pair.Local.IsValid() || !pair.Remote.IsValid() || pair.Local.Addr().Is4() != pair.Remote.Addr().Is4() {
		return nil, fmt.Errorf("proto: update addresses: %w", ErrBadPair)
	}
	var o outs
	p.startUpdate(now, pair, &o)
	p.flush(now, &o)
	return o, nil
}

// TestPaths makes the initiator test the candidate pairs with one
// INFORMATIONAL request carrying COOKIE2 (M57, M58): its transmissions walk
// the pairs in order, ProbeTries each, then fall back to the IKE SA pair so
// the window is not wedged. A pair that answers a request sent on it alone
// passes; an answer to a request sent on several pairs restarts the test on
// the answering pair with a new request (M44, M60, RFC 4621 §6.2).
func (p *Peer) TestPaths(now time.Time, pairs []Pair) ([]Output, error) {
	if err := p.canSteer("test paths"); err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("proto: test paths: %w", ErrBadPair)
	}
	for _, pr := range pairs {
		if !pr.Local.IsValid() || !pr.Remote.IsValid() {
			return nil, fmt.Errorf("proto: test paths: %w", ErrBadPair)
		}
	}
	if p.probeActive {
		return nil, fmt.Errorf("proto: test paths: %w", ErrBusy)
	}
	var o outs
	p.pendingProbe = slices.Clone(pairs)
	p.probeActive = true
	p.flush(now, &o)
	return o, nil
}

// SetLocalAddrs replaces this peer's own address set. With MOBIKE the new
// complete list is announced (M16, M65). A responder whose IKE SA address is
// gone moves its end of the IKE and IPsec SAs to another own address of the
// same family (M27) and sends the list from there.
func (p *Peer) SetLocalAddrs(now time.Time, addrs []netip.Addr) []Output {
	var o outs
	p.localAddrs = normAddrs(addrs, p.cfg.MaxAdditional+1)
	if p.state != stEstablished || !p.mobike {
		return nil
	}
	p.pendingList = true
	if p.cfg.Role == Responder && !slices.Contains(p.localAddrs, p.ike.Local.Addr()) {
		for _, a := range p.localAddrs {
			if a.Is4() == p.ike.Remote.Addr().Is4() {
				p.ike.Local = netip.AddrPortFrom(a, p.ike.Local.Port())
				p.addrGen++
				o.add(AddressesUpdated{Pair: p.ike})
				p.moveTraffic(&o, Pair{Local: p.ike.Local, Remote: p.traffic.Remote})
				break
			}
		}
	}
	p.flush(now, &o)
	return o
}

// HandleESP observes an ESP packet of this SA arriving from src on dst. Only
// packets on the current IPsec pair count as liveness (RFC 4621 §5.5.2,
// M69); others are reported as StrayTraffic. The SA is never re-targeted
// from them (M51 allows it for ESP; this engine does not).
func (p *Peer) HandleESP(now time.Time, src, dst netip.AddrPort) []Output {
	if p.state != stEstablished {
		return nil
	}
	if src == p.traffic.Remote && dst == p.traffic.Local {
		p.lastAlive = now
		return nil
	}
	return []Output{StrayTraffic{Src: src, Dst: dst}}
}

// NextDeadline returns when OnTimer must next be called; ok is false when no
// timer is armed.
func (p *Peer) NextDeadline() (t time.Time, ok bool) {
	if p.state == stClosed {
		return t, false
	}
	for _, r := range p.out {
		if !ok || r.next.Before(t) {
			t, ok = r.next, true
		}
	}
	if d, dok := p.dpdDue(); dok && (!ok || d.Before(t)) {
		t, ok = d, true
	}
	return t, ok
}

// OnTimer runs retransmissions, timeouts and DPD due at now.
func (p *Peer) OnTimer(now time.Time) []Output {
	if p.state == stClosed {
		return nil
	}
	var o outs
	mids := make([]uint32, 0, len(p.out))
	for mid := range p.out {
		mids = append(mids, mid)
	}
	slices.Sort(mids)
	for _, mid := range mids {
		r, ok := p.out[mid]
		if !ok || r.next.After(now) {
			continue
		}
		p.expire(now, r, &o)
		if p.state == stClosed {
			return o
		}
	}
	if d, ok := p.dpdDue(); ok && !d.After(now) {
		p.sendDPD(now, &o)
	}
	p.flush(now, &o)
	return o
}

// Handle processes one received message.
func (p *Peer) Handle(now time.Time, pkt Packet) []Output {
	m := pkt.Msg
	if m == nil || p.state == stClosed || !pkt.Src.IsValid() || !pkt.Dst.IsValid() {
		return nil
	}
	var o outs
	if !p.spiMatch(m) {
		o.add(Ignored{MsgID: m.MessageID, Reason: "unknown ike sa"})
		return o
	}
	if p.state == stEstablished && pkt.Src == p.ike.Remote && pkt.Dst == p.ike.Local {
		p.lastAlive = now // RFC 4621 §5.5.2: only the current pair is liveness
	}
	if m.IsResponse() {
		p.handleResponse(now, pkt, &o)
	} else {
		p.handleRequest(now, pkt, &o)
	}
	if p.state != stClosed {
		p.flush(now, &o)
	}
	return o
}

func (p *Peer) spiMatch(m *wire.Message) bool {
	switch {
	case p.cfg.Role == Responder && p.state == stIdle:
		return !m.IsResponse() && m.Exchange == wire.ExchangeIKESAInit && m.MessageID == 0 && m.SPIr.IsZero() && !m.SPIi.IsZero()
	case p.state == stInitSent:
		// With a Crypto, error answers (COOKIE, INVALID_KE_PAYLOAD,
		// NO_PROPOSAL_CHOSEN) carry a zero SPIr.
		return m.IsResponse() && m.Exchange == wire.ExchangeIKESAInit && m.SPIi == p.spiI && (!m.SPIr.IsZero() || p.cfg.Crypto != nil)
	}
	if m.SPIi != p.spiI || m.SPIr != p.spiR {
		// A retransmitted IKE_SA_INIT request still carries a zero SPIr.
		return p.cfg.Role == Responder && m.Exchange == wire.ExchangeIKESAInit && !m.IsResponse() &&
			m.SPIi == p.spiI && m.SPIr.IsZero()
	}
	return true
}

func (p *Peer) canSteer(op string) error {
	switch {
	case p.state != stEstablished:
		return fmt.Errorf("proto: %s: %w", op, ErrNotEstablished)
	case p.cfg.Role != Initiator:
		return fmt.Errorf("proto: %s: %w", op, ErrRole) // M8: the initiator decides
	case !p.mobike:
		return fmt.Errorf("proto: %s: %w", op, ErrNoMOBIKE) // M2
	}
	return nil
}

func (p *Peer) readRand(b []byte) error {
	if _, err := io.ReadFull(p.cfg.Rand, b); err != nil {
		return fmt.Errorf("read random: %w", err)
	}
	return nil
}

func (p *Peer) close(o *outs, cause CloseCause, reason string) {
	if p.state == stClosed {
		return
	}
	p.state = stClosed
	p.closeReason, p.closeCause = reason, cause
	p.out = map[uint32]*request{}
	o.add(SAClosed{Cause: cause, Reason: reason})
}

func (p *Peer) flags(resp bool) wire.Flags {
	var f wire.Flags
	if p.cfg.Role == Initiator { // original initiator; no rekey is modelled (M3)
		f |= wire.FlagInitiator
	}
	if resp {
		f |= wire.FlagResponse
	}
	return f
}

func (p *Peer) newRequest(ex wire.ExchangeType, pl []wire.Payload) *wire.Message {
	m := &wire.Message{Header: wire.Header{SPIi: p.spiI, SPIr: p.spiR, Exchange: ex, Flags: p.flags(false), MessageID: p.nextMID}, Payloads: pl}
	p.nextMID++
	return m
}

func (p *Peer) canSend() bool {
	if len(p.out) == 0 {
		return true
	}
	low := p.nextMID
	for mid := range p.out {
		low = min(low, mid)
	}
	return p.nextMID-low < p.cfg.Window // B4
}

func (p *Peer) curPair(r *request) Pair {
	switch {
	case r.kind == kProbe && r.candIdx < len(r.cands):
		return r.cands[r.candIdx]
	case r.follow:
		return p.ike // M13
	}
	return r.pair
}

func (p *Peer) sendRequest(now time.Time, r *request, o *outs) {
	if p.cfg.Crypto != nil {
		raw, err := p.cfg.Crypto.Seal(r.msg)
		if err != nil {
			p.close(o, CloseInternal, fmt.Sprintf("seal %s request #%d: %v", r.msg.Exchange, r.msg.MessageID, err))
			return
		}
		r.raw = raw
	}
	r.sentOn = map[Pair]bool{}
	r.dsts = map[netip.AddrPort]bool{}
	r.srcs = map[netip.Addr]bool{}
	r.addrGen = p.addrGen
	p.out[r.msg.MessageID] = r
	p.transmit(now, r, o)
}

func (p *Peer) transmit(now time.Time, r *request, o *outs) {
	pair := p.curPair(r)
	p.emit(r, pair, o)
	if r.kind == kProbe && r.candIdx < len(r.cands) {
		r.candTries++
		r.next = now.Add(p.cfg.RetransmitTimeout)
		return
	}
	r.tries++
	r.next = now.Add(p.cfg.RetransmitTimeout << min(r.tries-1, 6)) // B6 back-off
}

// emit sends the identical request bytes on pair (B5) and records where.
func (p *Peer) emit(r *request, pair Pair, o *outs) {
	r.sentOn[pair] = true
	r.dsts[pair.Remote] = true
	r.srcs[pair.Local.Addr()] = true
	o.add(Send{Src: pair.Local, Dst: pair.Remote, Msg: r.msg, Raw: r.raw})
}

func (p *Peer) expire(now time.Time, r *request, o *outs) {
	if r.kind == kProbe && r.candIdx < len(r.cands) {
		if r.candTries >= p.cfg.ProbeTries {
			r.candIdx++
			r.candTries = 0
			r.tries = 0 // fall back to the IKE SA pair with a full budget
		}
		p.transmit(now, r, o)
		return
	}
	if r.tries > p.cfg.RetransmitTries {
		p.timeout(r, o)
		return
	}
	p.transmit(now, r, o)
}

func (p *Peer) timeout(r *request, o *outs) {
	mid := r.msg.MessageID
	delete(p.out, mid)
	switch r.kind {
	case kRR:
		o.add(ReturnRoutabilityFailed{MsgID: mid, Remote: r.rrTarget})
		// RFC 4621 §5.5.2: a failed return routability check tears the SA down.
		p.close(o, CloseRRFailed, fmt.Sprintf("return routability of %s failed", r.rrTarget))
	case kProbe:
		o.add(PathTestResult{MsgID: mid})
		p.probeActive = false
		p.close(o, CloseTimeout, fmt.Sprintf("no response to #%d", mid))
	default:
		p.close(o, CloseTimeout, fmt.Sprintf("no response to #%d", mid)) // B6
	}
}

func (p *Peer) dpdDue() (time.Time, bool) {
	if p.state != stEstablished || p.cfg.DPDInterval <= 0 || len(p.out) > 0 {
		return time.Time{}, false
	}
	return p.lastAlive.Add(p.cfg.DPDInterval), true
}

func (p *Peer) sendDPD(now time.Time, o *outs) {
	var pl []wire.Payload
	if p.cfg.NATT && p.peerNATT && p.natHere && p.mobike {
		pl = p.natdPayloads(p.ike) // M49
	}
	r := &request{kind: kDPD, follow: true, msg: p.newRequest(wire.ExchangeInformational, pl)}
	p.sendRequest(now, r, o)
}

// flush sends what is pending as far as the window allows (M14, M61). An
// address update pending while the window is full collapses into one.
func (p *Peer) flush(now time.Time, o *outs) {
	for p.state == stEstablished && p.canSend() {
		switch {
		case p.pendingDelete:
			p.sendDelete(now, o)
		case p.pendingUpdate && p.cfg.Role == Initiator:
			p.sendUpdate(now, o)
		case p.pendingRR:
			p.sendRR(now, o)
		case p.pendingProbe != nil:
			p.sendProbe(now, o)
		case p.pendingList:
			p.sendList(now, o)
		default:
			return
		}
	}
}

func (p *Peer) cookie() ([]byte, error) {
	c := make([]byte, p.cfg.Cookie2Len)
	return c, p.readRand(c)
}

func (p *Peer) natdPayloads(pair Pair) []wire.Payload {
	return []wire.Payload{wire.NATDetectionSource(p.spiI, p.spiR, pair.Local), wire.NATDetectionDestination(p.spiI, p.spiR, pair.Remote)}
}

// noNATs is NO_NATS_ALLOWED for pair, sent when NAT-T is off (M53).
func (p *Peer) noNATs(pair Pair) []wire.Payload {
	if p.cfg.NATT {
		return nil
	}
	n, err := wire.NoNATsAllowed(pair.Local, pair.Remote)
	if err != nil {
		return nil
	}
	return []wire.Payload{n}
}

// listPayloads is the complete own address list without the address the
// message is sent from (M31, M32).
func (p *Peer) listPayloads(from netip.Addr) []wire.Payload {
	var pl []wire.Payload
	for _, a := range p.localAddrs {
		if a == from || len(pl) == p.cfg.MaxAdditional {
			continue
		}
		if n, err := wire.AdditionalAddress(a); err == nil {
			pl = append(pl, n)
		}
	}
	if len(pl) == 0 {
		pl = append(pl, wire.NotifyStatus(wire.NotifyNoAdditionalAddresses))
	}
	return pl
}

func (p *Peer) sendUpdate(now time.Time, o *outs) {
	p.pendingUpdate = false // M14: cleared at send time
	c, err := p.cookie()
	if err != nil {
		p.close(o, CloseInternal, err.Error())
		return
	}
	pl := []wire.Payload{wire.NotifyStatus(wire.NotifyUpdateSAAddresses)}
	if p.cfg.NATT && p.peerNATT {
		pl = append(pl, p.natdPayloads(p.ike)...)
	}
	pl = append(pl, p.noNATs(p.ike)...)
	r := &request{kind: kUpdate, follow: true, cookie2: c}
	if p.pendingList { // M16
		p.pendingList = false
		r.list = true
		pl = append(pl, p.listPayloads(p.ike.Local.Addr())...)
	}
	pl = append(pl, &wire.Notify{Type: wire.NotifyCookie2, Data: c})
	r.msg = p.newRequest(wire.ExchangeInformational, pl)
	p.sendRequest(now, r, o)
}

func (p *Peer) sendDelete(now time.Time, o *outs) {
	p.pendingDelete = false
	r := &request{kind: kDelete, follow: true, msg: p.newRequest(wire.ExchangeInformational, []wire.Payload{&wire.Delete{Protocol: wire.ProtocolIKE}})}
	p.sendRequest(now, r, o)
}

func (p *Peer) sendList(now time.Time, o *outs) {
	p.pendingList = false
	pl := append(p.listPayloads(p.ike.Local.Addr()), p.noNATs(p.ike)...)
	r := &request{kind: kList, follow: true, list: true, msg: p.newRequest(wire.ExchangeInformational, pl)}
	p.sendRequest(now, r, o)
}

func (p *Peer) sendRR(now time.Time, o *outs) {
	p.pendingRR = false
	c, err := p.cookie()
	if err != nil {
		p.close(o, CloseInternal, err.Error())
		return
	}
	r := &request{kind: kRR, follow: true, cookie2: c, rrTarget: p.ike.Remote,
		msg: p.newRequest(wire.ExchangeInformational, []wire.Payload{&wire.Notify{Type: wire.NotifyCookie2, Data: c}})}
	o.add(ReturnRoutabilityStarted{MsgID: r.msg.MessageID, Remote: r.rrTarget})
	p.sendRequest(now, r, o)
}

func (p *Peer) sendProbe(now time.Time, o *outs) {
	cands := p.pendingProbe
	p.pendingProbe = nil
	c, err := p.cookie()
	if err != nil {
		p.close(o, CloseInternal, err.Error())
		return
	}
	var pl []wire.Payload
	if p.cfg.NATT && p.peerNATT {
		// RFC 4621 §6.2, M48: NAT-D for the first candidate pair, so the
		// answer shows whether that pair is NATed (libreswan echoes
		// COOKIE2 only together with NAT-D). Retransmissions on later
		// candidates carry the same bytes (B5).
		pl = p.natdPayloads(cands[0])
	}
	pl = append(pl, &wire.Notify{Type: wire.NotifyCookie2, Data: c})
	r := &request{kind: kProbe, follow: true, cookie2: c, cands: cands,
		msg: p.newRequest(wire.ExchangeInformational, pl)}
	o.add(PathTestStarted{MsgID: r.msg.MessageID, Pairs: slices.Clone(cands)})
	p.sendRequest(now, r, o)
}

// startUpdate is M10, M11 and M13.
func (p *Peer) startUpdate(now time.Time, pair Pair, o *outs) {
	if pair != p.ike {
		p.ike = pair
		o.add(AddressesUpdated{Pair: pair})
	}
	p.addrGen++ // M15: replies to older updates get no MOBIKE processing
	p.pendingUpdate = true
	if !p.cfg.RequireRR || p.verified[pair.Remote] {
		p.moveTraffic(o, pair) // M11
	}
	// M13: outstanding requests follow p.ike at their next retransmission.
}

func (p *Peer) moveTraffic(o *outs, pair Pair) {
	encap := p.cfg.NATT && (p.natHere || p.natPeer)
	if pair == p.traffic && encap == p.encap {
		return
	}
	p.traffic, p.encap = pair, encap
	o.add(TrafficMoved{Pair: pair, Encap: encap})
}

func (p *Peer) setNAT(o *outs, here, peer bool) {
	if here == p.natHere && peer == p.natPeer {
		return
	}
	p.natHere, p.natPeer = here, peer
	o.add(NATChanged{Here: here, Peer: peer})
}

// natCompare checks received NAT-D notifies against the packet's headers
// (B10, §3.2 of the digest): peer is behind a NAT when no source hash
// matches, this node when the destination hash differs.
func (p *Peer) natCompare(m *wire.Message, pkt Packet) (here, peer, ok bool) {
	hs := wire.NATDetectionHash(p.spiI, p.spiR, pkt.Src)
	hd := wire.NATDetectionHash(p.spiI, p.spiR, pkt.Dst)
	srcSeen, dstSeen, srcMatch, dstMatch := false, false, false, false
	for _, n := range m.Notifies() {
		h, err := n.NATHash()
		if err != nil {
			continue
		}
		switch n.Type {
		case wire.NotifyNATDetectionSourceIP:
			srcSeen = true
			srcMatch = srcMatch || h == hs
		case wire.NotifyNATDetectionDestinationIP:
			if !dstSeen {
				dstSeen = true
				dstMatch = h == hd
			}
		}
	}
	if !srcSeen || !dstSeen {
		return false, false, false
	}
	return !dstMatch, !srcMatch, true
}

func normAddrs(in []netip.Addr, limit int) []netip.Addr {
	var out []netip.Addr
	for _, a := range in {
		a = a.Unmap()
		if a.IsValid() && !a.IsUnspecified() && !slices.Contains(out, a) && len(out) < limit {
			out = append(out, a)
		}
	}
	return out
}

// firstError returns the first error-type notify of m.
func firstError(m *wire.Message) *wire.Notify {
	for _, n := range m.Notifies() {
		if n.Type.IsError() {
			return n
		}
	}
	return nil
}

func cookieEqual(got *wire.Notify, want []byte) bool {
	return got != nil && subtle.ConstantTimeCompare(got.Data, want) == 1
}
