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
		o.add(Send{Src: pkt.Dst, Dst: pkt.Src, Msg: resp, Raw: p.storedRaw[mid]})
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
	var closeAfter CloseCause
	closeReason := ""
	if t, crit := unknownCritical(m); crit {
		// §2.2 of the digest: reject the whole message; the COOKIE2 of an
		// INFORMATIONAL is still echoed (M41).
		pl = []wire.Payload{&wire.Notify{Type: wire.NotifyUnsupportedCriticalPayload, Data: []byte{byte(t)}}}
		if p.cfg.MOBIKE {
			pl = append(pl, cookieEcho(m)...)
		}
	} else if m.Find(wire.PayloadEncrypted) != nil {
		// SK must not contain SK (RFC 7296 §3.14): Msg holds what was inside
		// the Encrypted payload.
		o.add(Ignored{MsgID: mid, Reason: "encrypted payload inside the encrypted payload"})
		pl = []wire.Payload{wire.NotifyStatus(wire.NotifyInvalidSyntax)}
	} else {
		switch {
		case m.Exchange == wire.ExchangeIKESAInit && p.cfg.Role == Responder && p.state == stIdle:
			pl = p.initRequest(pkt, o)
		case m.Exchange == wire.ExchangeIKEAuth && p.cfg.Role == Responder && p.state == stInitDone:
			pl, closeAfter, closeReason = p.authRequest(now, pkt, o)
		case m.Exchange == wire.ExchangeInformational && p.state == stEstablished:
			pl, closeAfter, closeReason = p.informational(now, pkt, o)
		default:
			answer = false
		}
	}
	if !answer {
		o.add(Ignored{MsgID: mid, Reason: fmt.Sprintf("unexpected %s request", m.Exchange)})
		return
	}
	resp := &wire.Message{Header: wire.Header{SPIi: p.spiI, SPIr: p.spiR, Exchange: m.Exchange, Flags: p.flags(true), MessageID: mid}, Payloads: pl}
	var raw []byte
	if p.cfg.Crypto != nil {
		var err error
		if raw, err = p.cfg.Crypto.Seal(resp); err != nil {
			p.close(o, CloseInternal, fmt.Sprintf("seal response #%d: %v", mid, err))
			return
		}
		p.storedRaw[mid] = raw
	}
	p.stored[mid] = resp
	p.processed[mid] = true
	for p.processed[p.recvNext] {
		delete(p.processed, p.recvNext)
		p.recvNext++
	}
	for id := range p.stored {
		if id+p.cfg.Window < p.recvNext {
			delete(p.stored, id) // B5: keep the last Window responses
			delete(p.storedRaw, id)
		}
	}
	o.add(Send{Src: pkt.Dst, Dst: pkt.Src, Msg: resp, Raw: raw}) // B7
	if closeAfter != 0 {
		p.close(o, closeAfter, closeReason)
	}
}

// unknownCritical finds a payload of a type this engine does not know with
// the critical bit set (§2.2 of the digest). SKF (RFC 7383) is known.
func unknownCritical(m *wire.Message) (wire.PayloadType, bool) {
	for _, pl := range m.Payloads {
		if r, ok := pl.(*wire.Raw); ok && r.Critical && !knownPayload(r.Kind) {
			return r.Kind, true
		}
	}
	return 0, false
}

func knownPayload(t wire.PayloadType) bool {
	return t >= wire.PayloadSA && t <= wire.PayloadEAP || t == wire.PayloadSKF
}

// cookieEcho is the COOKIE2 of a request, copied unchanged for its response
// (M41); values outside 8..64 octets are not echoed (M42, documented choice).
func cookieEcho(m *wire.Message) []wire.Payload {
	n := m.Notify(wire.NotifyCookie2)
	if n == nil {
		return nil
	}
	c, err := n.Cookie2()
	if err != nil {
		return nil
	}
	return []wire.Payload{&wire.Notify{Type: wire.NotifyCookie2, Data: slices.Clone(c)}}
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
func (p *Peer) authRequest(now time.Time, pkt Packet, o *outs) ([]wire.Payload, CloseCause, string) {
	m := pkt.Msg
	if n := m.Notify(wire.NotifyNoNATsAllowed); n != nil && !noNATsMatch(n, pkt) {
		o.add(UnexpectedNAT{MsgID: m.MessageID, Observed: Pair{Local: pkt.Dst, Remote: pkt.Src}, Detected: true})
		return []wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}, CloseUnexpectedNAT, "unexpected nat in ike_auth"
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
	return pl, 0, ""
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
// listed address (M32, M33). ok is false when the message carries no list,
// and when every entry of its list was refused: malformed data, or a
// loopback, multicast or unspecified address (M38); such a message must not
// wipe the set. ADDITIONAL_* wins over a NO_ADDITIONAL_ADDRESSES in the same
// message, and excess entries are skipped.
func (p *Peer) peerList(m *wire.Message, src netip.Addr) ([]netip.Addr, bool) {
	set := []netip.Addr{src.Unmap()}
	ok := false
	for _, n := range m.Notifies() {
		switch n.Type {
		case wire.NotifyNoAdditionalAddresses:
			ok = true
		case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
			a, err := n.Address()
			if err != nil || !usableAddr(a) {
				continue
			}
			ok = true
			if slices.Contains(set, a) || len(set) > p.cfg.MaxAdditional {
				continue
			}
			set = append(set, a)
		}
	}
	return set, ok
}

// usableAddr refuses addresses a peer can never be reached at.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast()
}

// informational handles an INFORMATIONAL request of either role.
func (p *Peer) informational(now time.Time, pkt Packet, o *outs) ([]wire.Payload, CloseCause, string) {
	m := pkt.Msg
	mid := m.MessageID
	if d, ok := m.Find(wire.PayloadDelete).(*wire.Delete); ok && d.Protocol == wire.ProtocolIKE {
		return nil, CloseDeletedByPeer, "deleted by peer" // B2
	}
	var cookie []wire.Payload
	if p.cfg.MOBIKE {
		// M41/M42: COOKIE2 is echoed in any INFORMATIONAL response, also
		// on an SA where the other side did not negotiate MOBIKE.
		cookie = cookieEcho(m)
	}
	if !p.mobike {
		return cookie, 0, "" // §1.1: the MOBIKE status notifies are ignored
	}
	update := m.Notify(wire.NotifyUpdateSAAddresses) != nil
	_, hasList := p.peerList(m, pkt.Src.Addr())
	natd := m.Notify(wire.NotifyNATDetectionSourceIP) != nil && m.Notify(wire.NotifyNATDetectionDestinationIP) != nil
	// M17 before M18: a stale update gets an ordinary response, whatever its
	// NO_NATS_ALLOWED says; likewise a stale address list (M34a before M34b).
	staleUpdate := update && p.cfg.Role == Responder && p.haveUpdateMID && mid < p.lastUpdateMID
	staleList := hasList && p.haveListMID && mid < p.lastListMID
	if n := m.Notify(wire.NotifyNoNATsAllowed); n != nil && ((update && !staleUpdate) || (hasList && !staleList)) && !noNATsMatch(n, pkt) {
		// M18, M34b, M54, M55: answer to the real source, change nothing.
		o.add(UnexpectedNAT{MsgID: mid, Observed: Pair{Local: pkt.Dst, Remote: pkt.Src}, Detected: true})
		return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnexpectedNATDetected)}, cookie...), 0, ""
	}
	if update {
		switch {
		case p.cfg.Role == Initiator:
			o.add(Ignored{MsgID: mid, Reason: "update_sa_addresses from the responder role"}) // scenario 39
		case staleUpdate:
			o.add(Ignored{MsgID: mid, Reason: "stale update_sa_addresses"}) // M17, M62
		case p.cfg.Accept != nil && !p.cfg.Accept(pkt.Dst.Addr(), pkt.Src.Addr()),
			p.overMoveBudget(now, pkt):
			// M19: leave IKE SA and IPsec SAs untouched.
			o.add(Ignored{MsgID: mid, Reason: "unacceptable addresses " + Pair{Local: pkt.Dst, Remote: pkt.Src}.String()})
			return append([]wire.Payload{wire.NotifyStatus(wire.NotifyUnacceptableAddresses)}, cookie...), 0, ""
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
	return append(pl, cookie...), 0, ""
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
		p.close(o, CloseCookie2Mismatch, fmt.Sprintf("cookie2 mismatch in response #%d", mid)) // M43
		return
	}
	if e := firstError(m); e != nil && e.Type == wire.NotifyInvalidSyntax && m.Exchange == wire.ExchangeInformational {
		// RFC 7296 §2.21.3: the peer could not make sense of our
		// request; the SA is not in a state both sides agree on.
		p.close(o, CloseInvalidSyntax, fmt.Sprintf("INVALID_SYNTAX in response #%d", mid))
		return
	}
	switch r.kind {
	case kInit:
		p.initResponse(now, r, pkt, o)
	case kAuth:
		p.authResponse(now, r, pkt, o)
	case kUpdate:
		p.updateResponse(r, pkt, o)
	case kList:
		if len(r.srcs) > 1 {
			p.pendingList = true // M35
		}
		var e wire.NotifyType
		if n := firstError(m); n != nil {
			e = n.Type
		}
		o.add(AddressListAcknowledged{MsgID: mid, Error: e})
	case kDelete:
		p.close(o, CloseDeleted, "deleted") // B2
	case kProbe:
		p.probeResponse(r, pkt, o)
	case kRR:
		p.rrResponse(r, o)
	case kDPD:
		p.dpdResponse(now, pkt, o)
	}
}

func (p *Peer) initResponse(now time.Time, r *request, pkt Packet, o *outs) {
	m := pkt.Msg
	if c := p.cfg.Crypto; c != nil {
		if pkt.Raw == nil {
			p.close(o, CloseInternal, "ike_sa_init response without its bytes")
			return
		}
		retry, err := c.InitResponse(r.raw, m, pkt.Raw)
		switch {
		case err != nil:
			p.close(o, CloseHandshake, "ike_sa_init failed: "+err.Error())
			return
		case retry: // COOKIE or INVALID_KE_PAYLOAD (RFC 7296 §2.6, §1.2)
			p.sendInit(now, o)
			return
		}
	}
	p.spiR = m.SPIr
	here, peer, ok := p.natCompare(m, pkt)
	p.peerNATT = ok
	pair := p.ike
	if p.cfg.NATT && ok {
		p.setNAT(o, here, peer)
		if p.cfg.MOBIKE || here || peer { // M6, B10
			if !p.cfg.KeepLocalPort {
				pair.Local = netip.AddrPortFrom(pair.Local.Addr(), IKEPortNATT)
			}
			pair.Remote = netip.AddrPortFrom(pair.Remote.Addr(), IKEPortNATT)
		}
	}
	var pl []wire.Payload
	if c := p.cfg.Crypto; c != nil {
		var err error
		if pl, err = c.AuthRequest(pair.Local, pair.Remote); err != nil {
			p.close(o, CloseInternal, "ike_auth request: "+err.Error())
			return
		}
	}
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
	var authErr error
	if c := p.cfg.Crypto; c != nil {
		// An error notify next to a valid AUTH is about the CHILD_SA only
		// (RFC 7296 §1.2): the IKE SA stands.
		authErr = c.AuthResponse(m)
	}
	if e := firstError(m); e != nil && (p.cfg.Crypto == nil || authErr != nil) {
		if e.Type == wire.NotifyUnexpectedNATDetected {
			o.add(UnexpectedNAT{MsgID: m.MessageID, Observed: r.pair}) // M56: restart from IKE_SA_INIT
			p.close(o, CloseUnexpectedNAT, "ike_auth failed: "+e.Type.String())
			return
		}
		p.close(o, CloseHandshake, "ike_auth failed: "+e.Type.String())
		return
	}
	if authErr != nil {
		p.close(o, CloseHandshake, "ike_auth failed: "+authErr.Error())
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
		res := PathTestResult{MsgID: mid}
		if !r.sentOn[pair] {
			res.Pair = pair // answered on a pair it was never sent on (B7 says: on the request's)
		}
		o.add(res)
	case len(r.sentOn) == 1:
		p.verified[pair.Remote] = true
		res := PathTestResult{MsgID: mid, Pair: pair, Passed: true}
		if p.cfg.NATT && pair == r.cands[0] {
			res.NATHere, res.NATPeer, res.NATChecked = p.natCompare(pkt.Msg, pkt)
		}
		o.add(res)
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

// dpdResponse is M49: a changed NAT mapping triggers an update. Without a
// reference from an update reply the first answer sets it (as strongSwan
// does), so a NAT that reboots before the first update is still noticed.
func (p *Peer) dpdResponse(now time.Time, pkt Packet, o *outs) {
	if p.cfg.Role != Initiator || !p.mobike {
		return
	}
	n := pkt.Msg.Notify(wire.NotifyNATDetectionDestinationIP)
	if n == nil {
		return
	}
	h, err := n.NATHash()
	switch {
	case err != nil:
	case !p.haveRef:
		p.dstRef, p.haveRef = h, true
	case h != p.dstRef:
		p.startUpdate(now, p.ike, o)
	}
}
