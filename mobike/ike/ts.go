package ike

import (
	"encoding/binary"
	"net/netip"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Traffic selector types (RFC 7296 §3.13.1).
const (
	TSIPv4Range = 7
	TSIPv6Range = 8
)

// TS is one traffic selector: an address range, an IP protocol (0 = any) and
// a port range.
type TS struct {
	Start, End         netip.Addr
	Proto              uint8
	StartPort, EndPort uint16
}

// AnyTS covers every address of a family, every protocol and port.
func AnyTS(v4 bool) TS {
	if v4 {
		return TS{Start: netip.IPv4Unspecified(), End: netip.AddrFrom4([4]byte{255, 255, 255, 255}), EndPort: 0xffff}
	}
	var all [16]byte
	for i := range all {
		all[i] = 0xff
	}
	return TS{Start: netip.IPv6Unspecified(), End: netip.AddrFrom16(all), EndPort: 0xffff}
}

// TSPayload is a TSi or TSr payload with the selectors ts.
func TSPayload(kind wire.PayloadType, ts ...TS) *wire.Raw {
	b := []byte{byte(len(ts)), 0, 0, 0}
	for _, t := range ts {
		typ, n := byte(TSIPv4Range), 16
		if !t.Start.Is4() {
			typ, n = TSIPv6Range, 40
		}
		b = append(b, typ, t.Proto)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = binary.BigEndian.AppendUint16(b, t.StartPort)
		b = binary.BigEndian.AppendUint16(b, t.EndPort)
		b = append(b, t.Start.AsSlice()...)
		b = append(b, t.End.AsSlice()...)
	}
	return &wire.Raw{Kind: kind, Body: b}
}
