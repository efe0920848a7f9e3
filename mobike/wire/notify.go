package wire

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Notify is the Notify payload (RFC 7296 §3.10). Every MOBIKE notify and
// NAT_DETECTION_* has Protocol ProtocolNone and no SPI.
type Notify struct {
	Protocol ProtocolID
	SPI      []byte
	Type     NotifyType
	Data     []byte
}

func (n *Notify) PayloadType() PayloadType { return PayloadNotify }

func (n *Notify) appendBody(b []byte) ([]byte, error) {
	if len(n.SPI) > 0xff {
		return b, ErrTooLong
	}
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.Type))
	b = append(b, n.SPI...)
	return append(b, n.Data...), nil
}

func (n *Notify) String() string {
	if len(n.Data) == 0 {
		return "N(" + n.Type.String() + ")"
	}
	return fmt.Sprintf("N(%s %x)", n.Type, n.Data)
}

func parseNotify(b []byte, at int) (*Notify, error) {
	if len(b) < 4 {
		return nil, perr(at+len(b), PayloadNotify, "notify", ErrTruncated)
	}
	n := &Notify{Protocol: ProtocolID(b[0]), Type: NotifyType(binary.BigEndian.Uint16(b[2:4]))}
	spiLen := int(b[1])
	if len(b)-4 < spiLen {
		return nil, perr(at+1, PayloadNotify, "notify spi", ErrBadLength)
	}
	if spiLen > 0 {
		n.SPI = b[4 : 4+spiLen]
	}
	if len(b) > 4+spiLen {
		n.Data = b[4+spiLen:]
	}
	return n, nil
}

// COOKIE2 data bounds (RFC 4555 §4.2.5).
const (
	MinCookie2Len = 8
	MaxCookie2Len = 64
	MaxCookieLen  = 64 // COOKIE (RFC 7296 §2.6): 1 to 64 octets
)

// NotifyStatus builds a data-less IKE SA notify (MOBIKE_SUPPORTED,
// UPDATE_SA_ADDRESSES, NO_ADDITIONAL_ADDRESSES, UNACCEPTABLE_ADDRESSES,
// UNEXPECTED_NAT_DETECTED, ...).
func NotifyStatus(t NotifyType) *Notify { return &Notify{Type: t} }

// AdditionalAddress builds ADDITIONAL_IP4_ADDRESS or ADDITIONAL_IP6_ADDRESS
// for addr (IPv4-mapped addresses are sent as IPv4).
func AdditionalAddress(addr netip.Addr) (*Notify, error) {
	if !addr.IsValid() {
		return nil, encErr("additional address", ErrBadNotifyData)
	}
	addr = addr.Unmap()
	t := NotifyAdditionalIP6Address
	if addr.Is4() {
		t = NotifyAdditionalIP4Address
	}
	return &Notify{Type: t, Data: addr.AsSlice()}, nil
}

// Cookie2 builds COOKIE2 with data c (8 to 64 octets).
func Cookie2(c []byte) (*Notify, error) {
	if len(c) < MinCookie2Len || len(c) > MaxCookie2Len {
		return nil, encErr("COOKIE2", ErrBadNotifyData)
	}
	return &Notify{Type: NotifyCookie2, Data: c}, nil
}

// NATDetectionSource builds NAT_DETECTION_SOURCE_IP for a packet sent from src.
func NATDetectionSource(spiI, spiR SPI, src netip.AddrPort) *Notify {
	h := NATDetectionHash(spiI, spiR, src)
	return &Notify{Type: NotifyNATDetectionSourceIP, Data: h[:]}
}

// NATDetectionDestination builds NAT_DETECTION_DESTINATION_IP for a packet sent to dst.
func NATDetectionDestination(spiI, spiR SPI, dst netip.AddrPort) *Notify {
	h := NATDetectionHash(spiI, spiR, dst)
	return &Notify{Type: NotifyNATDetectionDestinationIP, Data: h[:]}
}

// NoNATsAllowed builds NO_NATS_ALLOWED (RFC 4555 §4.2.6) for a packet sent
// from src to dst; both must be the same family.
func NoNATsAllowed(src, dst netip.AddrPort) (*Notify, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return nil, encErr("NO_NATS_ALLOWED", ErrBadNotifyData)
	}
	b := append(s.AsSlice(), d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return &Notify{Type: NotifyNoNATsAllowed, Data: b}, nil
}

// NATDetectionHash is SHA1(SPIi | SPIr | IP | port) of RFC 7296 §2.23, with
// the IP as 4 octets for IPv4 (also for IPv4-mapped input) and 16 for IPv6.
func NATDetectionHash(spiI, spiR SPI, ap netip.AddrPort) [20]byte {
	var buf [8 + 8 + 16 + 2]byte
	b := append(buf[:0], spiI[:]...)
	b = append(b, spiR[:]...)
	b = append(b, ap.Addr().Unmap().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	return sha1.Sum(b)
}

func (n *Notify) dataErr(reason string) error {
	return fmt.Errorf("ike: notify %s: %s: %w", n.Type, reason, ErrBadNotifyData)
}

// Address decodes the data of ADDITIONAL_IP4_ADDRESS (4 octets) or
// ADDITIONAL_IP6_ADDRESS (16 octets).
func (n *Notify) Address() (netip.Addr, error) {
	switch {
	case n.Type == NotifyAdditionalIP4Address && len(n.Data) == 4:
		return netip.AddrFrom4([4]byte(n.Data)), nil
	case n.Type == NotifyAdditionalIP6Address && len(n.Data) == 16:
		a := netip.AddrFrom16([16]byte(n.Data))
		if a.Is4In6() {
			return netip.Addr{}, n.dataErr("ipv4-mapped address")
		}
		return a, nil
	}
	return netip.Addr{}, n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
}

// NATHash decodes the 20-octet data of NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP.
func (n *Notify) NATHash() ([20]byte, error) {
	if (n.Type != NotifyNATDetectionSourceIP && n.Type != NotifyNATDetectionDestinationIP) || len(n.Data) != sha1.Size {
		return [20]byte{}, n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
	}
	return [20]byte(n.Data), nil
}

// Cookie2 returns the data of a COOKIE2 notify after checking its length.
func (n *Notify) Cookie2() ([]byte, error) {
	if n.Type != NotifyCookie2 || len(n.Data) < MinCookie2Len || len(n.Data) > MaxCookie2Len {
		return nil, n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
	}
	return n.Data, nil
}

// NoNATsAllowedAddrs decodes NO_NATS_ALLOWED: 12 octets for IPv4, 36 for IPv6.
func (n *Notify) NoNATsAllowedAddrs() (src, dst netip.AddrPort, err error) {
	if n.Type != NotifyNoNATsAllowed {
		return src, dst, n.dataErr("wrong type")
	}
	d := n.Data
	var s, t netip.Addr
	switch len(d) {
	case 12:
		s, t = netip.AddrFrom4([4]byte(d[0:4])), netip.AddrFrom4([4]byte(d[4:8]))
	case 36:
		s, t = netip.AddrFrom16([16]byte(d[0:16])), netip.AddrFrom16([16]byte(d[16:32]))
	default:
		return src, dst, n.dataErr(fmt.Sprintf("%d octets", len(d)))
	}
	p := d[len(d)-4:]
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(p[0:2])), netip.AddrPortFrom(t, binary.BigEndian.Uint16(p[2:4])), nil
}

// InvalidKEGroup decodes INVALID_KE_PAYLOAD: the 2-octet DH group the
// responder wants.
func (n *Notify) InvalidKEGroup() (DHGroup, error) {
	if n.Type != NotifyInvalidKEPayload || len(n.Data) != 2 {
		return 0, n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
	}
	return DHGroup(binary.BigEndian.Uint16(n.Data)), nil
}

// Validate checks the data of the notify types whose layout this package
// knows: the data-less MOBIKE notifies (MOBIKE_SUPPORTED is exempt: its
// content is ignored on receipt), ADDITIONAL_IP*_ADDRESS, COOKIE2,
// NO_NATS_ALLOWED, NAT_DETECTION_*, COOKIE and INVALID_KE_PAYLOAD. MOBIKE and NAT-D
// notifies must carry Protocol 0 and no SPI. Other types are accepted as is.
func (n *Notify) Validate() error {
	switch n.Type {
	case NotifyUnacceptableAddresses, NotifyUnexpectedNATDetected, NotifyMOBIKESupported,
		NotifyAdditionalIP4Address, NotifyAdditionalIP6Address, NotifyNoAdditionalAddresses,
		NotifyUpdateSAAddresses, NotifyCookie2, NotifyNoNATsAllowed,
		NotifyNATDetectionSourceIP, NotifyNATDetectionDestinationIP:
		if len(n.SPI) != 0 {
			return n.dataErr("unexpected spi")
		}
	}
	var err error
	switch n.Type {
	case NotifyUnacceptableAddresses, NotifyUnexpectedNATDetected, NotifyNoAdditionalAddresses, NotifyUpdateSAAddresses:
		if len(n.Data) != 0 {
			err = n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
		}
	case NotifyAdditionalIP4Address, NotifyAdditionalIP6Address:
		_, err = n.Address()
	case NotifyCookie2:
		_, err = n.Cookie2()
	case NotifyNoNATsAllowed:
		_, _, err = n.NoNATsAllowedAddrs()
	case NotifyNATDetectionSourceIP, NotifyNATDetectionDestinationIP:
		_, err = n.NATHash()
	case NotifyInvalidKEPayload:
		_, err = n.InvalidKEGroup()
	case NotifyCookie:
		if len(n.Data) < 1 || len(n.Data) > MaxCookieLen {
			err = n.dataErr(fmt.Sprintf("%d octets", len(n.Data)))
		}
	}
	return err
}
