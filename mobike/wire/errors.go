package wire

import (
	"errors"
	"strconv"
)

// Sentinel errors wrapped by *ParseError (and by encoders where noted).
var (
	ErrTruncated           = errors.New("truncated")
	ErrBadLength           = errors.New("bad length field")
	ErrTrailingData        = errors.New("trailing data after last payload")
	ErrMajorVersion        = errors.New("unsupported major version")
	ErrUnsupportedCritical = errors.New("unsupported critical payload")
	ErrSKNotLast           = errors.New("encrypted payload is not the last payload")
	ErrBadNotifyData       = errors.New("bad notify data")
	ErrBadAttribute        = errors.New("bad transform attribute")
	ErrNotESPMarker        = errors.New("not an IKE message: non-ESP marker missing")
	ErrKeepalive           = errors.New("NAT-T keepalive")
	ErrTooLong             = errors.New("value too long for its length field")
	ErrNotInitResponse     = errors.New("not an IKE_SA_INIT response")
)

// ParseError is the error every decoder returns for malformed input. Offset
// is relative to the start of the buffer handed to the decoder (for Parse, the
// first octet of the IKE header). Payload is the type of the payload being
// decoded, PayloadNone while in the header.
type ParseError struct {
	Offset  int
	Payload PayloadType
	Reason  string // what was being decoded, e.g. "notify", "proposal"
	Err     error  // one of the sentinels above
}

func (e *ParseError) Error() string {
	s := "ike: parse"
	if e.Reason != "" {
		s += " " + e.Reason
	}
	s += " at offset " + strconv.Itoa(e.Offset)
	if e.Payload != PayloadNone {
		s += " (payload " + e.Payload.String() + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

func perr(off int, pt PayloadType, reason string, err error) error {
	return &ParseError{Offset: off, Payload: pt, Reason: reason, Err: err}
}
