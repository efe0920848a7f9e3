package wire

// NonESPMarkerLen is the size of the non-ESP marker that precedes every IKE
// message on UDP port 4500 (RFC 3948 §2.2, RFC 7296 §2.23).
const NonESPMarkerLen = 4

// AddNonESPMarker returns msg preceded by the four zero octets of the non-ESP
// marker, for sending on port 4500.
func AddNonESPMarker(msg []byte) []byte {
	out := make([]byte, NonESPMarkerLen, NonESPMarkerLen+len(msg))
	return append(out, msg...)
}

// StripNonESPMarker classifies a datagram received on port 4500. It returns
// the IKE message after the marker, ErrKeepalive for a one-octet 0xff NAT-T
// keepalive (RFC 3948 §2.3), or ErrNotESPMarker (wrapped in a *ParseError) for
// UDP-encapsulated ESP (non-zero SPI) and datagrams too short to hold a marker.
// The result aliases b.
func StripNonESPMarker(b []byte) ([]byte, error) {
	if len(b) == 1 && b[0] == 0xff {
		return nil, ErrKeepalive
	}
	if len(b) < NonESPMarkerLen {
		return nil, perr(len(b), PayloadNone, "non-ESP marker", ErrTruncated)
	}
	if b[0]|b[1]|b[2]|b[3] != 0 {
		return nil, perr(0, PayloadNone, "non-ESP marker", ErrNotESPMarker)
	}
	return b[NonESPMarkerLen:], nil
}
