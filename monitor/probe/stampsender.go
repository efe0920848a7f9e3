package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// stampEndpoint is a STAMP Session-Sender for one pair (one session, own
// SSID, sequence numbers from 0).
//
// Fresh randomness per probe: in unauthenticated mode an Extra Padding TLV
// carries 8 random octets, echoed by any reflector (RFC 8762-only ones copy
// the tail verbatim). In authenticated mode the low 16 bits of the T1
// fraction (< 16 µs, well inside the declared ~1 ms error estimate) are
// random and the reply must carry a valid HMAC under the shared key, which an
// off-path forger does not have; this keeps the probe at the 112-octet base
// size.
//
// Every LocationEvery-th probe (and the first) carries a Location TLV; the
// reflector's answer tells whether a NAT changed the source or destination.
type stampEndpoint struct {
	sock     *sharedSock
	local    netip.AddrPort // the pair's source address and the socket's port
	remote   netip.AddrPort
	to       netip.AddrPort
	oob      []byte // PKTINFO: source address and device
	key      []byte
	mode     STAMPMode
	locEvery int
	ssid     uint16
	clock    Clock
	deliver  func(Reply)
	close    func() error
}

const stampNonceLenUnauth = 8

func newSTAMPEndpoint(s *sharedSock, remote netip.AddrPort, key []byte, locEvery int, c Clock) *stampEndpoint {
	e := &stampEndpoint{sock: s, local: s.local, remote: remote, to: remote, key: key, locEvery: max(locEvery, 1), clock: c}
	if len(key) > 0 {
		e.mode = STAMPAuthenticated
	}
	for e.ssid == 0 {
		e.ssid = randUint16()
	}
	return e
}

func (e *stampEndpoint) setDeliver(f func(Reply)) { e.deliver = f }
func (e *stampEndpoint) setClose(f func() error)  { e.close = f }
func (e *stampEndpoint) Close() error             { return e.close() }

func (e *stampEndpoint) NonceLen() int {
	if e.mode == STAMPAuthenticated {
		return 2
	}
	return stampNonceLenUnauth
}

// encode builds probe seq (exposed for the byte-rate benchmark).
func (e *stampEndpoint) encode(b []byte, seq uint32, nonce []byte, now time.Time) ([]byte, error) {
	p := SenderPacket{Seq: seq, Timestamp: NTPFromTime(now), ErrorEstimate: defaultErrorEstimate, SSID: e.ssid}
	if seq%uint32(e.locEvery) == 0 {
		p.TLVs = AppendTLV(p.TLVs, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	}
	if e.mode == STAMPAuthenticated {
		p.Timestamp = p.Timestamp&^0xffff | NTPTimestamp(binary.BigEndian.Uint16(nonce))
		if len(p.TLVs) > 0 {
			p.TLVs = AppendHMACTLV(p.TLVs, TLVFlagU, e.key, seq)
		}
	} else {
		p.TLVs = AppendTLV(p.TLVs, TLV{Flags: TLVFlagU, Type: TLVExtraPadding, Value: nonce})
	}
	return AppendSender(b, &p, e.mode, e.key)
}

// Send queues the test packet; the transport's Flush sends it.
func (e *stampEndpoint) Send(seq uint32, nonce []byte) (int, error) {
	now := e.clock.Now()
	n, err := e.sock.enqueue(e.to, e.oob, func(b []byte) ([]byte, error) { return e.encode(b, seq, nonce, now) })
	if err != nil {
		return 0, fmt.Errorf("probe: stamp send to %s: %w", e.remote, err)
	}
	return ipHeaderLen(e.remote.Addr()) + 8 + n, nil
}

func (e *stampEndpoint) handle(b []byte, at time.Time) {
	r, ok := e.parseReply(b)
	if !ok {
		return
	}
	r.At = at
	e.deliver(r)
}

// parseReply decodes and checks a reflector packet; ok=false drops it.
func (e *stampEndpoint) parseReply(b []byte) (Reply, bool) {
	rp, err := DecodeReflector(b, e.mode, e.key)
	if err != nil {
		return Reply{}, false
	}
	if rp.SSID != 0 && rp.SSID != e.ssid {
		return Reply{}, false
	}
	r := Reply{Seq: rp.SenderSeq}
	if t2, t3 := rp.ReceiveTimestamp.Time(), rp.Timestamp.Time(); rp.ReceiveTimestamp != 0 && !t3.Before(t2) && t3.Sub(t2) < time.Second {
		r.Remote = t3.Sub(t2)
	}
	tlvs, _ := DecodeTLVs(rp.TLVs) // keep the well-formed prefix
	if e.mode == STAMPAuthenticated {
		var n [2]byte
		binary.BigEndian.PutUint16(n[:], uint16(rp.SenderTimestamp))
		r.Nonce = n[:]
	} else {
		for _, t := range tlvs {
			if t.Type == TLVExtraPadding && len(t.Value) == stampNonceLenUnauth {
				r.Nonce = bytes.Clone(t.Value)
				break
			}
		}
	}
	if e.tlvsTrusted(rp, tlvs) {
		r.NAT = e.natVerdict(tlvs)
	}
	return r, true
}

// tlvsTrusted: no TLV flagged I, and in authenticated mode a valid HMAC TLV
// after every non-padding TLV.
func (e *stampEndpoint) tlvsTrusted(rp ReflectorPacket, tlvs []TLV) bool {
	off := 0
	for _, t := range tlvs {
		if t.Flags&TLVFlagI != 0 {
			return false
		}
		if e.mode == STAMPAuthenticated && t.Type != TLVExtraPadding {
			if t.Type != TLVHMAC {
				off += stampTLVHdrLen + len(t.Value)
				continue
			}
			return equal16(hmacTLV(e.key, rp.Seq, rp.TLVs[:off]), t.Value)
		}
		off += stampTLVHdrLen + len(t.Value)
	}
	if e.mode == STAMPAuthenticated {
		for _, t := range tlvs {
			if t.Type != TLVExtraPadding {
				return false // non-padding TLVs without an HMAC TLV
			}
		}
	}
	return true
}

// natVerdict compares the reflector's Location answer with the socket's
// address and the reflector address (stamp-digest §6.6). Unreported (zero
// or U-flagged) fields give no conclusion.
func (e *stampEndpoint) natVerdict(tlvs []TLV) mobike.NATVerdict {
	for _, t := range tlvs {
		if t.Type != TLVLocation || t.Flags&(TLVFlagU|TLVFlagM) != 0 {
			continue
		}
		loc, err := DecodeLocation(t.Value)
		if err != nil {
			return mobike.NATUnknown
		}
		return compareLocation(loc, e.local, e.remote)
	}
	return mobike.NATUnknown
}

func compareLocation(loc Location, local, remote netip.AddrPort) mobike.NATVerdict {
	compared := false
	if loc.Src.IsValid() && loc.SrcPort != 0 {
		if loc.Src.Unmap() != local.Addr().Unmap() || loc.SrcPort != local.Port() {
			return mobike.NATPresent
		}
		compared = true
	}
	if loc.Dst.IsValid() && loc.DstPort != 0 {
		if loc.Dst.Unmap() != remote.Addr().Unmap() || loc.DstPort != remote.Port() {
			return mobike.NATPresent
		}
		compared = true
	}
	if compared {
		return mobike.NATNone
	}
	return mobike.NATUnknown
}
