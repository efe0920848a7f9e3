package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ReflectParams is what the Session-Reflector knows about one received
// request, besides its bytes.
type ReflectParams struct {
	Mode STAMPMode
	Key  []byte // base HMAC key (authenticated mode) and HMAC TLV key (both modes)

	RxTime, TxTime NTPTimestamp // T2 and T3
	ErrorEstimate  ErrorEstimate
	TTL            uint8 // IPv4 TTL / IPv6 Hop Limit of the request

	// Src and Dst are the request's source and destination as the reflector
	// saw them; they fill the Location TLV.
	Src, Dst     netip.AddrPort
	HideLocation bool // answer Location requests with zero values (local policy)
}

// Reflect builds the stateless reply to req (RFC 8762 §4.3, RFC 8972 §4).
// The reply is exactly as long as the request: base fields are rewritten,
// every MBZ octet is zero, and the TLVs are processed in place (Location is
// answered, unknown types get U, a malformed TLV gets M and stops processing,
// a bad or missing HMAC TLV sets I on every TLV). Requests shorter than the
// base packet and, in authenticated mode, requests whose base HMAC does not
// verify are rejected with an error: the caller drops them without reply.
func Reflect(req []byte, p ReflectParams) ([]byte, error) {
	sp, err := DecodeSender(req, p.Mode, p.Key)
	if err != nil {
		return nil, fmt.Errorf("stamp: reflect: %w", err)
	}
	base := p.Mode.BaseLen()
	reply := make([]byte, len(req))
	copy(reply[base:], req[base:])
	rp := ReflectorPacket{
		Seq:                 sp.Seq, // stateless
		Timestamp:           p.TxTime,
		ErrorEstimate:       p.ErrorEstimate,
		SSID:                sp.SSID,
		ReceiveTimestamp:    p.RxTime,
		SenderSeq:           sp.Seq,
		SenderTimestamp:     sp.Timestamp,
		SenderErrorEstimate: sp.ErrorEstimate,
		SenderTTL:           p.TTL,
	}
	if len(reply) > base && !allZero(reply[base:]) {
		// an all-zero tail is RFC 8762 padding, not TLVs: copied verbatim
		reflectTLVs(reply[base:], sp.Seq, rp.Seq, p)
	}
	putReflectorBase(reply, &rp, p.Mode, p.Key)
	return reply, nil
}

type tlvEnt struct{ off, n int }

// reflectTLVs processes the TLV area t of a reply in place. reqSeq is the
// request's Sequence Number (input of its HMAC TLV), repSeq the reply's.
func reflectTLVs(t []byte, reqSeq, repSeq uint32, p ReflectParams) {
	// Pass 1: structure and the HMAC TLV.
	var ents []tlvEnt
	malformedAt := -1
	for off := 0; off < len(t); {
		if len(t)-off < stampTLVHdrLen {
			malformedAt = off
			break
		}
		n := int(binary.BigEndian.Uint16(t[off+2:]))
		if len(t)-off-stampTLVHdrLen < n {
			malformedAt = off
			break
		}
		ents = append(ents, tlvEnt{off, n})
		off += stampTLVHdrLen + n
	}
	hmacIdx, onlyPadding := -1, true
	for i, e := range ents {
		switch t[e.off+1] {
		case TLVHMAC:
			if hmacIdx < 0 {
				hmacIdx = i
			}
		case TLVExtraPadding:
		default:
			onlyPadding = false
		}
	}
	integrityOK := true
	switch {
	case hmacIdx >= 0:
		e := ents[hmacIdx]
		integrityOK = len(p.Key) > 0 && e.n == stampHMACLen &&
			equal16(hmacTLV(p.Key, reqSeq, t[:e.off]), t[e.off+stampTLVHdrLen:e.off+stampTLVHdrLen+e.n])
		for _, later := range ents[hmacIdx+1:] { // only Extra Padding may follow it
			if t[later.off+1] != TLVExtraPadding {
				integrityOK = false
			}
		}
	case p.Mode == STAMPAuthenticated && !onlyPadding:
		integrityOK = false // TLVs in authenticated mode need an HMAC TLV
	}
	if !integrityOK {
		for _, e := range ents {
			t[e.off] |= TLVFlagI
		}
		return
	}
	// Pass 2: process each TLV up to the first malformed one.
	processTLVs(t, ents, hmacIdx, malformedAt, p)
	if hmacIdx >= 0 {
		e := ents[hmacIdx]
		copy(t[e.off+stampTLVHdrLen:], hmacTLV(p.Key, repSeq, t[:e.off]))
	}
}

func processTLVs(t []byte, ents []tlvEnt, hmacIdx, malformedAt int, p ReflectParams) {
	for i, e := range ents {
		v := t[e.off+stampTLVHdrLen : e.off+stampTLVHdrLen+e.n]
		ok := true
		switch t[e.off+1] {
		case TLVExtraPadding:
		case TLVLocation:
			ok = answerLocation(v, p)
		case TLVHMAC:
			if i != hmacIdx {
				t[e.off] |= TLVFlagU // a second HMAC TLV: not processed
				continue
			}
		default:
			t[e.off] |= TLVFlagU
			continue
		}
		if !ok {
			t[e.off] = t[e.off]&^TLVFlagU | TLVFlagM
			return // stop processing; the rest stays verbatim
		}
		t[e.off] &^= TLVFlagU | TLVFlagM | TLVFlagI
	}
	if malformedAt >= 0 && len(t)-malformedAt >= stampTLVHdrLen {
		t[malformedAt] |= TLVFlagM // its Length runs past the end of the packet
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func equal16(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// answerLocation fills a Location TLV value in place; false = malformed.
func answerLocation(v []byte, p ReflectParams) bool {
	if len(v) < 4 {
		return false
	}
	// validate all sub-TLVs before writing anything
	for off := 4; off < len(v); {
		if len(v)-off < stampTLVHdrLen {
			return false
		}
		n := int(binary.BigEndian.Uint16(v[off+2:]))
		if len(v)-off-stampTLVHdrLen < n {
			return false
		}
		switch v[off+1] {
		case subDstIPReq, subSrcIPReq:
			if n != subAddrValLen {
				return false
			}
		case subSrcMACReq:
			if n != subMACValLen {
				return false
			}
		}
		off += stampTLVHdrLen + n
	}
	clear(v[:4])
	if !p.HideLocation {
		binary.BigEndian.PutUint16(v[0:], p.Dst.Port())
		binary.BigEndian.PutUint16(v[2:], p.Src.Port())
	}
	for off := 4; off < len(v); {
		n := int(binary.BigEndian.Uint16(v[off+2:]))
		val := v[off+stampTLVHdrLen : off+stampTLVHdrLen+n]
		switch v[off+1] {
		case subDstIPReq, subSrcIPReq:
			a := p.Src.Addr()
			typ4, typ6 := byte(subSrcIPv4), byte(subSrcIPv6)
			if v[off+1] == subDstIPReq {
				a = p.Dst.Addr()
				typ4, typ6 = subDstIPv4, subDstIPv6
			}
			a = a.Unmap()
			clear(val)
			v[off] = 0
			if a.Is4() {
				v[off+1] = typ4
				if !p.HideLocation {
					b4 := a.As4()
					copy(val, b4[:])
				}
			} else {
				v[off+1] = typ6
				if !p.HideLocation && a.IsValid() {
					b16 := a.As16()
					copy(val, b16[:])
				}
			}
		case subSrcMACReq:
			// a UDP socket does not see the source MAC: EUI-64, all zero
			v[off], v[off+1] = 0, subSrcEUI64
			clear(val)
		default:
			v[off] |= TLVFlagU
		}
		off += stampTLVHdrLen + n
	}
	return true
}
