package probe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// STAMP wire constants (RFC 8762 §4, RFC 8972 §4; offsets from
// /work/shared/docs/stamp-digest.md §3).
const (
	// STAMPPort is the default UDP port of a Session-Reflector (RFC 8762
	// §4.1: the TWAMP-Test receiver port 862 is reused).
	STAMPPort = 862

	stampBaseUnauth = 44  // base packet size, unauthenticated, both directions
	stampBaseAuth   = 112 // base packet size, authenticated, both directions
	stampHMACOff    = 96  // authenticated mode: HMAC covers octets 0..95
	stampHMACLen    = 16  // HMAC-SHA-256 truncated to 128 bits (RFC 8762 §4.4)
	stampTLVHdrLen  = 4   // Flags, Type, Length(2)

	ntpUnixOffset = 2208988800 // seconds from 1900-01-01 to 1970-01-01
)

// TLV flag bits (RFC 8972 §4, IANA "STAMP TLV Flags").
const (
	TLVFlagU = 0x80 // unrecognized
	TLVFlagM = 0x40 // malformed
	TLVFlagI = 0x20 // integrity check failed
)

// TLV types used by this package (IANA "STAMP TLV Types").
const (
	TLVExtraPadding = 1
	TLVLocation     = 2
	TLVHMAC         = 8
)

// Location sub-TLV types (IANA "STAMP Sub-TLV Types").
const (
	subSrcMACReq  = 1 // sender: Source MAC Address (request)
	subSrcEUI64   = 3 // reflector: Source EUI-64 Address
	subDstIPReq   = 4 // sender: Destination IP Address (request)
	subDstIPv4    = 5
	subDstIPv6    = 6
	subSrcIPReq   = 7 // sender: Source IP Address (request)
	subSrcIPv4    = 8
	subSrcIPv6    = 9
	subAddrValLen = 16
	subMACValLen  = 8
)

// STAMPMode is the authentication mode of a STAMP session. It is configured
// at both ends and never inferred from the packet length (a packet with TLVs
// can be 112 octets long in unauthenticated mode).
type STAMPMode uint8

const (
	STAMPUnauthenticated STAMPMode = iota
	STAMPAuthenticated
)

func (m STAMPMode) String() string {
	switch m {
	case STAMPUnauthenticated:
		return "unauthenticated"
	case STAMPAuthenticated:
		return "authenticated"
	}
	return fmt.Sprintf("stamp-mode(%d)", uint8(m))
}

// BaseLen is the size of the base packet in this mode (44 or 112 octets).
func (m STAMPMode) BaseLen() int {
	if m == STAMPAuthenticated {
		return stampBaseAuth
	}
	return stampBaseUnauth
}

// Decoder errors. Decoders wrap them in a *DecodeError; use errors.Is.
var (
	ErrShort        = errors.New("packet too short")
	ErrNoKey        = errors.New("authenticated mode without a key")
	ErrHMAC         = errors.New("hmac mismatch")
	ErrTLVTruncated = errors.New("tlv runs past the end of the packet")
	ErrTLVLength    = errors.New("tlv length invalid for its type")
	ErrTimestamp    = errors.New("invalid timestamp")
)

// DecodeError is the typed error of the STAMP decoders: what was decoded, at
// which octet offset it failed, and why (one of the Err* sentinels).
type DecodeError struct {
	What   string
	Offset int
	Err    error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("stamp: decode %s at offset %d: %v", e.What, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// NTPTimestamp is an NTPv4 64-bit timestamp: seconds since 1900 in the high 32
// bits, fraction of a second in units of 2^-32 s in the low 32 bits.
type NTPTimestamp uint64

// NTPFromTime converts t (floor rounding of the fraction).
func NTPFromTime(t time.Time) NTPTimestamp {
	secs := uint64(t.Unix()+ntpUnixOffset) & 0xffffffff
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return NTPTimestamp(secs<<32 | frac)
}

// Time converts ts back. Seconds values below 2^31 are taken as NTP era 1
// (after 2036-02-07 06:28:16 UTC), so the conversion is right from 1968 to 2104.
func (ts NTPTimestamp) Time() time.Time {
	secs := int64(ts >> 32)
	if secs < 1<<31 {
		secs += 1 << 32
	}
	nsec := (int64(ts&0xffffffff)*1e9 + (1<<32 - 1)) >> 32 // ceil so that a floor-encoded value round-trips
	return time.Unix(secs-ntpUnixOffset, nsec).UTC()
}

// ErrorEstimate is the 16-bit Error Estimate (RFC 4656 §4.1.2, Z bit from RFC
// 8186): S(1) Z(1) Scale(6) Multiplier(8).
type ErrorEstimate uint16

// NewErrorEstimate packs the fields; scale is truncated to 6 bits.
func NewErrorEstimate(synced, ptp bool, scale, multiplier uint8) ErrorEstimate {
	var e ErrorEstimate
	if synced {
		e |= 0x8000
	}
	if ptp {
		e |= 0x4000
	}
	return e | ErrorEstimate(scale&0x3f)<<8 | ErrorEstimate(multiplier)
}

func (e ErrorEstimate) Synced() bool      { return e&0x8000 != 0 }
func (e ErrorEstimate) PTP() bool         { return e&0x4000 != 0 }
func (e ErrorEstimate) Scale() uint8      { return uint8(e>>8) & 0x3f }
func (e ErrorEstimate) Multiplier() uint8 { return uint8(e) }

// Bound is the error bound Multiplier × 2^(Scale−32) seconds.
func (e ErrorEstimate) Bound() time.Duration {
	sh := int(e.Scale()) - 32
	v := float64(e.Multiplier()) * float64(time.Second)
	for ; sh < 0; sh++ {
		v /= 2
	}
	for ; sh > 0; sh-- {
		v *= 2
	}
	return time.Duration(v)
}

// defaultErrorEstimate: not synchronised to UTC, NTP format, 2^-10 s (≈1 ms).
var defaultErrorEstimate = NewErrorEstimate(false, false, 22, 1)

// SenderPacket is a Session-Sender test packet (RFC 8762 §4.2.1 and §4.2.2,
// with the RFC 8972 SSID).
type SenderPacket struct {
	Seq           uint32
	Timestamp     NTPTimestamp // T1
	ErrorEstimate ErrorEstimate
	SSID          uint16
	TLVs          []byte // raw TLV area after the base packet
}

// ReflectorPacket is a Session-Reflector test packet (RFC 8762 §4.3.1 and
// §4.3.2, with the RFC 8972 SSID).
type ReflectorPacket struct {
	Seq                 uint32
	Timestamp           NTPTimestamp // T3
	ErrorEstimate       ErrorEstimate
	SSID                uint16
	ReceiveTimestamp    NTPTimestamp // T2
	SenderSeq           uint32
	SenderTimestamp     NTPTimestamp // T1 echoed
	SenderErrorEstimate ErrorEstimate
	SenderTTL           uint8
	TLVs                []byte
}

// field offsets of the four base layouts.
type stampLayout struct {
	seq, ts, err, ssid        int
	rxTS, sSeq, sTS, sErr, tt int
}

var (
	layoutUnauth = stampLayout{seq: 0, ts: 4, err: 12, ssid: 14, rxTS: 16, sSeq: 24, sTS: 28, sErr: 36, tt: 40}
	layoutAuth   = stampLayout{seq: 0, ts: 16, err: 24, ssid: 26, rxTS: 32, sSeq: 48, sTS: 64, sErr: 72, tt: 80}
)

func layoutOf(m STAMPMode) stampLayout {
	if m == STAMPAuthenticated {
		return layoutAuth
	}
	return layoutUnauth
}

// mac16 is HMAC-SHA-256 truncated to 16 octets over the concatenated parts.
func mac16(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)[:stampHMACLen]
}

// AppendSender appends the encoding of p to b. In authenticated mode key must
// be non-empty; the base HMAC is computed over octets 0..95.
func AppendSender(b []byte, p *SenderPacket, mode STAMPMode, key []byte) ([]byte, error) {
	if mode == STAMPAuthenticated && len(key) == 0 {
		return b, fmt.Errorf("stamp: encode sender: %w", ErrNoKey)
	}
	start := len(b)
	b = append(b, make([]byte, mode.BaseLen())...)
	pkt := b[start:]
	l := layoutOf(mode)
	binary.BigEndian.PutUint32(pkt[l.seq:], p.Seq)
	binary.BigEndian.PutUint64(pkt[l.ts:], uint64(p.Timestamp))
	binary.BigEndian.PutUint16(pkt[l.err:], uint16(p.ErrorEstimate))
	binary.BigEndian.PutUint16(pkt[l.ssid:], p.SSID)
	if mode == STAMPAuthenticated {
		copy(pkt[stampHMACOff:], mac16(key, pkt[:stampHMACOff]))
	}
	return append(b, p.TLVs...), nil
}

// AppendReflector appends the encoding of p to b (see AppendSender).
func AppendReflector(b []byte, p *ReflectorPacket, mode STAMPMode, key []byte) ([]byte, error) {
	if mode == STAMPAuthenticated && len(key) == 0 {
		return b, fmt.Errorf("stamp: encode reflector: %w", ErrNoKey)
	}
	start := len(b)
	b = append(b, make([]byte, mode.BaseLen())...)
	pkt := b[start:]
	putReflectorBase(pkt, p, mode, key)
	return append(b, p.TLVs...), nil
}

// putReflectorBase writes the base fields of p into pkt (len ≥ base), zeroing
// every MBZ octet, and the base HMAC in authenticated mode.
func putReflectorBase(pkt []byte, p *ReflectorPacket, mode STAMPMode, key []byte) {
	clear(pkt[:mode.BaseLen()])
	l := layoutOf(mode)
	binary.BigEndian.PutUint32(pkt[l.seq:], p.Seq)
	binary.BigEndian.PutUint64(pkt[l.ts:], uint64(p.Timestamp))
	binary.BigEndian.PutUint16(pkt[l.err:], uint16(p.ErrorEstimate))
	binary.BigEndian.PutUint16(pkt[l.ssid:], p.SSID)
	binary.BigEndian.PutUint64(pkt[l.rxTS:], uint64(p.ReceiveTimestamp))
	binary.BigEndian.PutUint32(pkt[l.sSeq:], p.SenderSeq)
	binary.BigEndian.PutUint64(pkt[l.sTS:], uint64(p.SenderTimestamp))
	binary.BigEndian.PutUint16(pkt[l.sErr:], uint16(p.SenderErrorEstimate))
	pkt[l.tt] = p.SenderTTL
	if mode == STAMPAuthenticated {
		copy(pkt[stampHMACOff:], mac16(key, pkt[:stampHMACOff]))
	}
}

// checkBase checks the length and, in authenticated mode, the base HMAC.
func checkBase(what string, b []byte, mode STAMPMode, key []byte) error {
	if len(b) < mode.BaseLen() {
		return &DecodeError{What: what, Offset: len(b), Err: ErrShort}
	}
	if mode == STAMPAuthenticated {
		if len(key) == 0 {
			return &DecodeError{What: what, Offset: stampHMACOff, Err: ErrNoKey}
		}
		if !hmac.Equal(mac16(key, b[:stampHMACOff]), b[stampHMACOff:stampBaseAuth]) {
			return &DecodeError{What: what, Offset: stampHMACOff, Err: ErrHMAC}
		}
	}
	return nil
}

// DecodeSender decodes a Session-Sender packet. MBZ octets are ignored. The
// returned TLVs alias b.
func DecodeSender(b []byte, mode STAMPMode, key []byte) (SenderPacket, error) {
	if err := checkBase("sender", b, mode, key); err != nil {
		return SenderPacket{}, err
	}
	l := layoutOf(mode)
	return SenderPacket{
		Seq:           binary.BigEndian.Uint32(b[l.seq:]),
		Timestamp:     NTPTimestamp(binary.BigEndian.Uint64(b[l.ts:])),
		ErrorEstimate: ErrorEstimate(binary.BigEndian.Uint16(b[l.err:])),
		SSID:          binary.BigEndian.Uint16(b[l.ssid:]),
		TLVs:          b[mode.BaseLen():],
	}, nil
}

// DecodeReflector decodes a Session-Reflector packet. The returned TLVs alias b.
func DecodeReflector(b []byte, mode STAMPMode, key []byte) (ReflectorPacket, error) {
	if err := checkBase("reflector", b, mode, key); err != nil {
		return ReflectorPacket{}, err
	}
	l := layoutOf(mode)
	return ReflectorPacket{
		Seq:                 binary.BigEndian.Uint32(b[l.seq:]),
		Timestamp:           NTPTimestamp(binary.BigEndian.Uint64(b[l.ts:])),
		ErrorEstimate:       ErrorEstimate(binary.BigEndian.Uint16(b[l.err:])),
		SSID:                binary.BigEndian.Uint16(b[l.ssid:]),
		ReceiveTimestamp:    NTPTimestamp(binary.BigEndian.Uint64(b[l.rxTS:])),
		SenderSeq:           binary.BigEndian.Uint32(b[l.sSeq:]),
		SenderTimestamp:     NTPTimestamp(binary.BigEndian.Uint64(b[l.sTS:])),
		SenderErrorEstimate: ErrorEstimate(binary.BigEndian.Uint16(b[l.sErr:])),
		SenderTTL:           b[l.tt],
		TLVs:                b[mode.BaseLen():],
	}, nil
}

// TLV is one RFC 8972 TLV. Value aliases the decoded buffer.
type TLV struct {
	Flags uint8
	Type  uint8
	Value []byte
}

// AppendTLV appends the encoding of t.
func AppendTLV(b []byte, t TLV) []byte {
	b = append(b, t.Flags, t.Type)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
	return append(b, t.Value...)
}

// DecodeTLVs splits a TLV area. On error it returns the TLVs decoded before
// the bad one, and the *DecodeError's Offset is that TLV's offset in b.
func DecodeTLVs(b []byte) ([]TLV, error) {
	var out []TLV
	for off := 0; off < len(b); {
		if len(b)-off < stampTLVHdrLen {
			return out, &DecodeError{What: "tlv", Offset: off, Err: ErrTLVTruncated}
		}
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if len(b)-off-stampTLVHdrLen < n {
			return out, &DecodeError{What: "tlv", Offset: off, Err: ErrTLVTruncated}
		}
		out = append(out, TLV{Flags: b[off], Type: b[off+1], Value: b[off+stampTLVHdrLen : off+stampTLVHdrLen+n]})
		off += stampTLVHdrLen + n
	}
	return out, nil
}

// Location is a reflector's answer in a Location TLV (RFC 8972 §4.2): the
// addresses and ports it saw on the request. Zero fields were not reported.
type Location struct {
	DstPort, SrcPort uint16
	Dst, Src         netip.Addr
}

// LocationRequest is the value of a sender's Location TLV asking for the
// destination and source IP addresses (sub-TLVs 4 and 7, flags U=1, ports 0).
func LocationRequest() []byte {
	v := make([]byte, 4, 4+2*(stampTLVHdrLen+subAddrValLen))
	v = AppendTLV(v, TLV{Flags: TLVFlagU, Type: subDstIPReq, Value: make([]byte, subAddrValLen)})
	return AppendTLV(v, TLV{Flags: TLVFlagU, Type: subSrcIPReq, Value: make([]byte, subAddrValLen)})
}

// DecodeLocation decodes the value of a reflector's Location TLV. Sub-TLVs
// flagged U and unknown sub-TLVs are skipped; all-zero addresses are left
// invalid (not reported, which never means "no NAT").
func DecodeLocation(v []byte) (Location, error) {
	if len(v) < 4 {
		return Location{}, &DecodeError{What: "location", Offset: len(v), Err: ErrShort}
	}
	loc := Location{DstPort: binary.BigEndian.Uint16(v), SrcPort: binary.BigEndian.Uint16(v[2:])}
	subs, err := DecodeTLVs(v[4:])
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			de.What, de.Offset = "location sub-tlv", de.Offset+4
		}
		return Location{}, err
	}
	for _, s := range subs {
		if s.Flags&TLVFlagU != 0 {
			continue
		}
		var a netip.Addr
		switch s.Type {
		case subDstIPv4, subSrcIPv4:
			if len(s.Value) != subAddrValLen {
				return Location{}, &DecodeError{What: "location sub-tlv", Offset: 4, Err: ErrTLVLength}
			}
			a = netip.AddrFrom4([4]byte(s.Value[:4]))
		case subDstIPv6, subSrcIPv6:
			if len(s.Value) != subAddrValLen {
				return Location{}, &DecodeError{What: "location sub-tlv", Offset: 4, Err: ErrTLVLength}
			}
			a = netip.AddrFrom16([16]byte(s.Value))
		default:
			continue
		}
		if a.IsUnspecified() {
			continue
		}
		if s.Type == subDstIPv4 || s.Type == subDstIPv6 {
			loc.Dst = a
		} else {
			loc.Src = a
		}
	}
	return loc, nil
}

// hmacTLVInput is the HMAC TLV's input: the packet's Sequence Number field
// followed by every TLV before the HMAC TLV, as on the wire (RFC 8972 §4.8).
func hmacTLV(key []byte, seq uint32, before []byte) []byte {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seq)
	return mac16(key, s[:], before)
}

// AppendHMACTLV appends an HMAC TLV (flags f) computed over seq and tlvs,
// which must be every TLV of the packet so far.
func AppendHMACTLV(tlvs []byte, flags uint8, key []byte, seq uint32) []byte {
	return AppendTLV(tlvs, TLV{Flags: flags, Type: TLVHMAC, Value: hmacTLV(key, seq, tlvs)})
}
