package wire

import "encoding/binary"

// HeaderLen is the size of the IKE header.
const HeaderLen = 28

// Version is the version octet sent in every message (major 2, minor 0).
const Version = 0x20

// Header is the IKE header (RFC 7296 §3.1). NextPayload and Length are
// computed by Message.Marshal and filled in by Parse.
type Header struct {
	SPIi        SPI
	SPIr        SPI
	NextPayload PayloadType
	Version     uint8 // major<<4 | minor; Marshal sends Version when zero
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags.Has(FlagResponse) }

// MajorVersion is the high nibble of the version octet.
func (h *Header) MajorVersion() uint8 { return h.Version >> 4 }

func (h *Header) appendTo(b []byte) []byte {
	b = append(b, h.SPIi[:]...)
	b = append(b, h.SPIr[:]...)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// ParseHeader decodes the first 28 octets of b. It rejects a major version
// other than 2 with ErrMajorVersion (the caller may answer with
// INVALID_MAJOR_VERSION) but does not check Length against len(b).
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, perr(len(b), PayloadNone, "header", ErrTruncated)
	}
	copy(h.SPIi[:], b[0:8])
	copy(h.SPIr[:], b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.MajorVersion() != 2 {
		return h, perr(17, PayloadNone, "header", ErrMajorVersion)
	}
	return h, nil
}
