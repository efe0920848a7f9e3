package proto

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mobiked/mobiked/mobike/wire"
)

// handleRequest answers a request of the peer: a retransmission gets the
// stored response, sent to the source of this copy (B5, M59); a new request
// inside the window is processed once (B4).
func (p *Peer) handleRequest(now time.Time, pkt Packet, o *outs) {
	m := pkt.Msg
	mid := m.MessageID
	if resp, ok := p.stored[mid]; ok && resp.Exchange == m.Exchange {
		o.add(Send{Src: pkt.Dst, Dst: pkt.Src, Msg: resp})
		return
	}
	if mid < p.recvNext || p.processed[mid] {
		o.add(Ignored{MsgID: mid, Reason: "old request, response discarded"})
		return
	}
	if mid-p.recvNext >= p.cfg.Window {
		o.add(Ignored{MsgID: mid, Reason: "request outside window"}) // B4
		return
	}
	var pl []wire.Payload
	answer := true
	closeAfter := ""
	if t, crit := unknownCritical(m); crit {
		pl = []wire.Payload{&wire.Notify{Type: wire.NotifyUnsupportedCriticalPayload, Data: []byte{byte(t)}}}
	} else {
		switch {
		case m.Exchange == wire.ExchangeIKESAInit && p.cfg.Role == Responder && p.state == stIdle:
			pl = p.initRequest(pkt, o)
		case m.Exchange == wire.ExchangeIKEAuth && p.cfg.Role == Responder && p.state == stInitDone:
			pl, closeAfter = p.authRequest(now, pkt, o)
		case m.Exchange == wire.ExchangeInformational && p.state == stEstablished:
			pl, closeAfter = p.informational(now, pkt, o)
		default:
			answer = false
		}
	}
	if !answer {
		o.add(Ignored{MsgID: mid, Reason: fmt.Sprintf("unexpected %s request", m.Exchange)})
		return
	}
	resp := &wire.Message{Header: wire.Header{SPIi: p.spiI, SPIr: p.spiR, Exchange: m.Exchange, Flags: p.flags(true), MessageID: mid}, Payloads: pl}
	p.stored[mid] = resp
	p.processed[mid] = true
	for p.processed[p.recvNext] {
		delete(p.processed, p.recvNext)
		p.recvNext++
	}
	for id := range p.stored {
		if id+p.cfg.Window < p.recvNext {
			delete(p.stored, id) // B5: keep the last Window responses
		}
	}
	o.add(Send{Src: pkt.Dst, Dst: pkt.Src, Msg: resp}) // B7
	if closeAfter != "" {
		p.close(o, closeAfter)
	}
}

func unknownCritical(m *wire.Message) (wire.PayloadType, bool) {
	for _, pl := range m.Payloads {
		if r, ok := pl.(*wire.Raw); ok && r.Critical && (r.Kind < wire.PayloadSA || r.Kind > wire.PayloadEAP) {
			return r.Kind, true
		}
	}
	return 0, false
}

// initRequest is the responder's side of IKE_SA_INIT, reduced to NAT
// detection (B10).
func (p *Peer) initRequest(pkt Packet, o *outs) []wire.Payload {
	p.spiI = pkt.Msg.SPIi
	here, peer, ok := p.natCompare(pkt.Msg, pkt) // hashed with SPIr = 0
	if err := p.readRand(p.spiR[:]); err != nil || p.spiR.IsZero() {
		p.spiR[7] |= 1
	}
	p.peerNATT = ok
	p.ike = Pair{Local: pkt.Dst, Remote: pkt.Src}
	p.state = stInitDone
	if !p.cfg.NATT || !ok {
		return nil
	}
	p.setNAT(o, here, peer)
	return p.natdPayloads(p.ike)
}

// authRequest is the responder's side of IKE_AUTH: M2, M5, M7, M53/M54.
func (p *Peer) authRequest(now time.Time, pkt Packet, o *outs) ([]wire.Payload, string) {
	m := pkt.Msg
	if n := m.Notify(wire.NotifyNoNATsAllowed); n != nil && !noNATsMatch(n, pkt) {
		o.add(UnexpectedNAT{MsgID: m.MessageID, Observed: Pair{Local: pkt.Dst, Remote: pkt.Src}, Detected: true})
		return []wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}, "unexpected nat in ike_auth"
	}
	p.ike = Pair{Local: pkt.Dst, Remote: pkt.Src} // M5
	p.confirmed = p.ike
	p.mobike = p.cfg.MOBIKE && m.Notify(wire.NotifyMOBIKESupported) != nil // M2: data ignored
	p.verified[pkt.Src] = true
	if addrs, ok := p.peerList(m, pkt.Src.Addr()); ok {
		p.peerAddrs = addrs // M7
	} else {
		p.peerAddrs = []netip.Addr{pkt.Src.Addr().Unmap()}
	}
	p.state = stEstablished
	p.lastAlive = now
	p.moveTraffic(&outs{}, p.ike)
	o.add(Established{Pair: p.ike, MOBIKE: p.mobike, NATHere: p.natHere, NATPeer: p.natPeer})
	var pl []wire.Payload
	if p.mobike {
		pl = append(pl, wire.NotifyStatus(wire.NotifyMOBIKESupported))
		pl = append(pl, p.listPayloads(pkt.Dst.Addr())...)
	}
	return pl, ""
}

// noNATsMatch compares NO_NATS_ALLOWED with the headers the request arrived
// with; bad length or family counts as a mismatch (M54).
func noNATsMatch(n *wire.Notify, pkt Packet) bool {
	s, d, err := n.NoNATsAllowedAddrs()
	if err != nil {
		return false
	}
	if s.Addr().Is4() != pkt.Src.Addr().Unmap().Is4() {
		return false
	}
	return s.Addr() == pkt.Src.Addr().Unmap() && s.Port() == pkt.Src.Port() &&
		d.Addr() == pkt.Dst.Addr().Unmap() && d.Port() == pkt.Dst.Port()
}

// peerList builds the peer address set of a message: its source plus every
// listed address (M32, M33). ok is false when the message carries no list.
// ADDITIONAL_* wins over a NO_ADDITIONAL_ADDRESSES in the same message, and
// malformed or excess entries are skipped (M38).
func (p *Peer) peerList(m *wire.Message, src netip.Addr) ([]netip.Addr, bool) {
	set := []netip.Addr{src.Unmap()}
	ok := false
	for _, n := range m.Notifies() {
		switch n.Type {
		case wire.NotifyNoAdditionalAddresses:
			ok = true
		case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
			ok = true
			a, err := n.Address()
			if err != nil || !a.IsValid() || a.IsUnspecified() || slices.Contains(set, a) || len(set) > p.cfg.MaxAdditional {
				continue
			}
			set = append(set, a)
		}
	}
	return set, ok
}

// informational handles an INFORMATIONAL request of either role.
func (p *Peer) informational(now time.Time, pkt Packet, o *outs) ([]wire.Payload, string) {
	m := pkt.Msg
	mid := m.MessageID
	if d, ok := m.Find(wire.PayloadDelete).(*wire.Delete); ok && d.Protocol == wire.ProtocolIKE {
		return nil, "deleted by peer" // B2
	}
	if !p.mobike {
		return nil, "" // §1.1: unknown status notifies are ignored
	}
	var cookie []wire.Payload
	if n := m.Notify(wire.NotifyCookie2); n != nil {
		// M41/M42: echo 8..64 octets unchanged; other lengths are not echoed.
		if c, err := n.Cookie2(); err == nil {
			cookie = []wire.Payload{&wire.Notify{Type: wire.NotifyCookie2, Data: slices.Clone(c)}}
		}
	}
	update := m.Notify(wire.NotifyUpdateSAAddresses) != nil
	_, hasList := p.peerList(m, pkt.Src.Addr())
	natd := m.Notify(wire.NotifyNATDetectionSourceIP) != nil && m.Notify(wire.NotifyNATDetectionDestinationIP) != nil
	if n := m.Notify(wire.NotifyNoNATsAllowed); n != nil && (update || hasList) && !noNATsMatch(n, pkt) {
		// M18, M34b, M54, M55: answer to the real source, change nothing.
		o.add(UnexpectedNAT{MsgID: mid, Observed: Pair{Local: pkt.Dst, Remote: pkt.Src}, Detected: true})
		return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}, cookie...), ""
	}
	if update {
		switch {
		case p.cfg.Role == Initiator:
			o.add(Ignored{MsgID: mid, Reason: "update_sa_addresses from the responder role"}) // scenario 39
		case p.haveUpdateMID && mid < p.lastUpdateMID:
			o.add(Ignored{MsgID: mid, Reason: "stale update_sa_addresses"}) // M17, M62
		case p.cfg.Accept != nil && !p.cfg.Accept(pkt.Dst.Addr(), pkt.Src.Addr()),
			p.overMoveBudget(now, pkt):
			// M19: leave IKE SA and IPsec SAs untouched.
			o.add(Ignored{MsgID: mid, Reason: "unacceptable addresses " + Pair{Local: pkt.Dst, Remote: pkt.Src}.String()})
			return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnacceptableAddresses)}, cookie...), ""
		default:
			p.lastUpdateMID, p.haveUpdateMID = mid, true
			p.responderUpdate(pkt, natd, o)
		}
	}
	if hasList {
		p.addressList(now, pkt, o)
	}
	var pl []wire.Payload
	if natd && p.cfg.NATT {
		pl = append(pl, p.natdPayloads(Pair{Local: pkt.Dst, Remote: pkt.Src})...) // M21, M48: own, fresh
	}
	return append(pl, cookie...), ""
}

// overMoveBudget reports whether moving the IKE SA to pkt's source would
// exceed Config.MaxMovesPerMinute (M70); it records the move otherwise.
func (p *Peer) overMoveBudget(now time.Time, pkt Packet) bool {
	if p.cfg.MaxMovesPerMinute <= 0 || pkt.Src == p.ike.Remote {
		return false
	}
	p.moves = slices.DeleteFunc(p.moves, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
	if len(p.moves) >= p.cfg.MaxMovesPerMinute {
		return true
	}
	p.moves = append(p.moves, now)
	return false
}

// responderUpdate is M20, M22, M23 and M24.
func (p *Peer) responderUpdate(pkt Packet, natd bool, o *outs) {
	mid := pkt.Msg.MessageID
	if natd && p.cfg.NATT {
		if here, peer, ok := p.natCompare(pkt.Msg, pkt); ok {
			p.setNAT(o, here, peer) // M24
		}
	}
	if np := (Pair{Local: pkt.Dst, Remote: pkt.Src}); np != p.ike {
		p.ike = np // M20: from the IP/UDP header only
		p.addrGen++
		o.add(AddressesUpdated{MsgID: mid, Pair: np})
	}
	p.confirmed = p.ike
	if p.cfg.RequireRR && !p.verified[pkt.Src] {
		p.pendingRR = true // M22: traffic waits for the check
		return
	}
	p.pendingRR = false
	p.moveTraffic(o, p.ike) // M23
}

// addressList is M34: the newest list by Message ID replaces the set.
func (p *Peer) addressList(now time.Time, pkt Packet, o *outs) {
	mid := pkt.Msg.MessageID
	if p.haveListMID && mid < p.lastListMID {
		o.add(Ignored{MsgID: mid, Reason: "stale address list"}) // M34a, M62
		return
	}
	p.lastListMID, p.haveListMID = mid, true
	set, _ := p.peerList(pkt.Msg, pkt.Src.Addr())
	p.peerAddrs = set
	o.add(PeerAddressesChanged{MsgID: mid, Addrs: slices.Clone(set)})
	// M66: the responder's address in use is gone, so the initiator moves;
	// towards the address the list came from, keeping the IKE port.
	if p.cfg.Role == Initiator && !slices.Contains(set, p.ike.Remote.Addr().Unmap()) {
		np := Pair{Local: p.ike.Local, Remote: netip.AddrPortFrom(pkt.Src.Addr(), p.ike.Remote.Port())}
		if np.Local.Addr().Is4() == np.Remote.Addr().Is4() {
			p.startUpdate(now, np, o)
		}
	}
}

// handleResponse matches a response to our outstanding request; the first
// response per Message ID wins (M63).
func (p *Peer) handleResponse(now time.Time, pkt Packet, o *outs) {
	m := pkt.Msg
	mid := m.MessageID
	r, ok := p.out[mid]
	if !ok || r.msg.Exchange != m.Exchange {
		o.add(Ignored{MsgID: mid, Reason: "unmatched or duplicate response"})
		return
	}
	delete(p.out, mid)
	if r.cookie2 != nil && !cookieEqual(m.Notify(wire.NotifyCookie2), r.cookie2) {
		p.close(o, fmt.Sprintf("cookie2 mismatch in response #%d", mid)) // M43
		return
	}
	switch r.kind {
	case kInit:
		p.initResponse(now, pkt, o)
	case kAuth:
		p.authResponse(now, r, pkt, o)
	case kUpdate:
		p.updateResponse(r, pkt, o)
	case kList:
		if len(r.srcs) > 1 {
			p.pendingList = true // M35
		}
	case kProbe:
		p.probeResponse(r, pkt, o)
	case kRR:
		p.rrResponse(r, o)
	case kDPD:
		p.dpdResponse(now, pkt, o)
	}
}

func (p *Peer) initResponse(now time.Time, pkt Packet, o *outs) {
	m := pkt.Msg
	p.spiR = m.SPIr
	here, peer, ok := p.natCompare(m, pkt)
	p.peerNATT = ok
	pair := p.ike
	if p.cfg.NATT && ok {
		p.setNAT(o, here, peer)
		if p.cfg.MOBIKE || here || peer { // M6, B10
			pair.Local = netip.AddrPortFrom(pair.Local.Addr(), IKEPortNATT)
			pair.Remote = netip.AddrPortFrom(pair.Remote.Addr(), IKEPortNATT)
		}
	}
	var pl []wire.Payload
	if p.cfg.MOBIKE {
		pl = append(pl, wire.NotifyStatus(wire.NotifyMOBIKESupported))
		pl = append(pl, p.listPayloads(pair.Local.Addr())...)
	}
	pl = append(pl, p.noNATs(pair)...) // M53: first IKE_AUTH request
	p.state = stAuthSent
	p.ike = pair
	p.sendRequest(now, &request{kind: kAuth, pair: pair, msg: p.newRequest(wire.ExchangeIKEAuth, pl)}, o)
}

func (p *Peer) authResponse(now time.Time, r *request, pkt Packet, o *outs) {
	m := pkt.Msg
	if e := firstError(m); e != nil {
		if e.Type == wire.NotifyUnexpectedNATDetected {
			o.add(UnexpectedNAT{MsgID: m.MessageID, Observed: r.pair}) // M56: restart from IKE_SA_INIT
		}
		p.close(o, "ike_auth failed: "+e.Type.String())
		return
	}
	p.ike = r.pair // M5: the first IKE_AUTH request's headers
	p.confirmed = p.ike
	p.mobike = p.cfg.MOBIKE && m.Notify(wire.NotifyMOBIKESupported) != nil
	p.verified[p.ike.Remote] = true
	if addrs, ok := p.peerList(m, pkt.Src.Addr()); ok {
		p.peerAddrs = addrs
	} else {
		p.peerAddrs = []netip.Addr{pkt.Src.Addr().Unmap()}
	}
	p.state = stEstablished
	p.lastAlive = now
	p.moveTraffic(&outs{}, p.ike)
	o.add(Established{Pair: p.ike, MOBIKE: p.mobike, NATHere: p.natHere, NATPeer: p.natPeer})
}

// updateResponse is M25, M26 and M28–M30 (and M56 for UNEXPECTED_NAT_DETECTED).
func (p *Peer) updateResponse(r *request, pkt Packet, o *outs) {
	m := pkt.Msg
	mid := m.MessageID
	if e := firstError(m); e != nil {
		if e.Type == wire.NotifyUnexpectedNATDetected {
			o.add(UnexpectedNAT{MsgID: mid, Observed: Pair{Local: pkt.Dst, Remote: pkt.Src}})
			if r.addrGen == p.addrGen && p.natRetries < p.cfg.RetransmitTries {
				p.natRetries++
				p.pendingUpdate = true // M56: retry with a new request
				return
			}
		}
		if r.addrGen != p.addrGen {
			o.add(Ignored{MsgID: mid, Reason: "error reply to superseded update"})
			return
		}
		p.revert(mid, e.Type, o)
		return
	}
	if r.list && len(r.srcs) > 1 {
		p.pendingList = true // M35
	}
	if r.addrGen != p.addrGen {
		o.add(Ignored{MsgID: mid, Reason: "reply to superseded update"}) // M28
		return
	}
	p.natRetries = 0
	if len(r.dsts) == 1 {
		p.verified[p.ike.Remote] = true // M44: only a single-destination request proves it
	}
	if p.cfg.NATT {
		if here, peer, ok := p.natCompare(m, pkt); ok {
			p.setNAT(o, here, peer) // M30
			if n := m.Notify(wire.NotifyNATDetectionDestinationIP); n != nil {
				p.dstRef, _ = n.NATHash()
				p.haveRef = true
			}
		}
	}
	p.confirmed = p.ike
	o.add(UpdateConfirmed{MsgID: mid, Pair: p.ike})
	if !p.cfg.RequireRR || p.verified[p.ike.Remote] {
		p.moveTraffic(o, p.ike) // M29
	}
}

// revert returns to the last pair the responder agreed to (M26).
func (p *Peer) revert(mid uint32, reason wire.NotifyType, o *outs) {
	failed := p.ike
	p.natRetries = 0
	p.pendingUpdate = false
	if p.ike != p.confirmed {
		p.ike = p.confirmed
		p.addrGen++
	}
	p.moveTraffic(o, p.confirmed)
	o.add(UpdateRejected{MsgID: mid, Pair: failed, Reason: reason, Reverted: p.confirmed})
}

func (p *Peer) probeResponse(r *request, pkt Packet, o *outs) {
	mid := pkt.Msg.MessageID
	p.probeActive = false
	pair := Pair{Local: pkt.Dst, Remote: pkt.Src}
	switch {
	case !slices.Contains(r.cands, pair):
		o.add(PathTestResult{MsgID: mid})
	case len(r.sentOn) == 1:
		p.verified[pair.Remote] = true
		o.add(PathTestResult{MsgID: mid, Pair: pair, Passed: true})
	default:
		// M44, M60, RFC 4621 §6.2: restart with a new request on this pair.
		o.add(PathTestResult{MsgID: mid, Pair: pair, Restarted: true})
		p.pendingProbe = []Pair{pair}
		p.probeActive = true
	}
}

func (p *Peer) rrResponse(r *request, o *outs) {
	mid := r.msg.MessageID
	if r.rrTarget != p.ike.Remote || len(r.dsts) != 1 {
		// RFC 4621 §5.5.2: the pair changed during the check; discard it.
		o.add(ReturnRoutabilityFailed{MsgID: mid, Remote: r.rrTarget, Restarted: true})
		if p.cfg.RequireRR && !p.verified[p.ike.Remote] {
			p.pendingRR = true
		}
		return
	}
	p.verified[r.rrTarget] = true
	o.add(ReturnRoutabilityPassed{MsgID: mid, Remote: r.rrTarget})
	p.moveTraffic(o, p.ike) // M23
}

// dpdResponse is M49: a changed NAT mapping triggers an update.
func (p *Peer) dpdResponse(now time.Time, pkt Packet, o *outs) {
	if p.cfg.Role != Initiator || !p.mobike || !p.haveRef {
		return
	}
	n := pkt.Msg.Notify(wire.NotifyNATDetectionDestinationIP)
	if n == nil {
		return
	}
	if h, err := n.NATHash(); err == nil && h != p.dstRef {
		p.startUpdate(now, p.ike, o)
	}
}
