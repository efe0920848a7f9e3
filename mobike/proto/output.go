package proto

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mobiked/mobiked/mobike/wire"
)

// Role is the MOBIKE role of a Peer, fixed when the first IKE SA is created
// (M3). It is not the header I flag.
type Role uint8

const (
	Initiator Role = iota + 1
	Responder
)

func (r Role) String() string {
	switch r {
	case Initiator:
		return "initiator"
	case Responder:
		return "responder"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// Pair is a (local, remote) address pair as seen by one peer.
type Pair struct {
	Local, Remote netip.AddrPort
}

func (p Pair) String() string { return p.Local.String() + "<->" + p.Remote.String() }

// Packet is one received IKE message with the addresses of the IP and UDP
// headers it arrived with: Src is the sender as seen here, Dst the local
// address it arrived on.
type Packet struct {
	Src, Dst netip.AddrPort
	Msg      *wire.Message
	// Raw is the IKE message as received (without a non-ESP marker); with
	// Config.Crypto it is required for the IKE_SA_INIT response, whose
	// bytes the responder's AUTH signs.
	Raw []byte
}

// Output is something the engine asks the caller to do (Send) or reports
// (every other type).
type Output interface {
	isOutput()
	String() string
}

// Send asks the caller to send Msg from Src to Dst. With Config.Crypto, Raw
// holds the encoded message, byte-identical for every retransmission of a
// request and every re-send of a response (B5); without one it is nil and
// the caller encodes Msg.
type Send struct {
	Src, Dst netip.AddrPort
	Msg      *wire.Message
	Raw      []byte
}

// Established reports the end of IKE_AUTH: the IKE SA and its IPsec SAs use
// Pair, and MOBIKE is in force when both peers sent MOBIKE_SUPPORTED (M2).
type Established struct {
	Pair             Pair
	MOBIKE           bool
	NATHere, NATPeer bool
}

// AddressesUpdated reports that the IKE SA now uses Pair (M10, M20).
type AddressesUpdated struct {
	MsgID uint32
	Pair  Pair
}

// TrafficMoved reports that the IPsec SAs (the traffic) now use Pair, with or
// without UDP encapsulation (M11, M23, M27, M29).
type TrafficMoved struct {
	Pair  Pair
	Encap bool
}

// UpdateConfirmed reports that the responder accepted an UPDATE_SA_ADDRESSES
// for Pair (M29, M30).
type UpdateConfirmed struct {
	MsgID uint32
	Pair  Pair
}

// UpdateRejected reports UNACCEPTABLE_ADDRESSES (or another error notify) in
// reply to an update; the engine has reverted to Reverted (M26).
type UpdateRejected struct {
	MsgID    uint32
	Pair     Pair
	Reason   wire.NotifyType
	Reverted Pair
}

// PeerAddressesChanged reports the peer's new address set (M33).
type PeerAddressesChanged struct {
	MsgID uint32
	Addrs []netip.Addr
}

// ReturnRoutabilityStarted reports a COOKIE2 check of Remote (M22, M45).
type ReturnRoutabilityStarted struct {
	MsgID  uint32
	Remote netip.AddrPort
}

// ReturnRoutabilityPassed reports that Remote echoed the COOKIE2.
type ReturnRoutabilityPassed struct {
	MsgID  uint32
	Remote netip.AddrPort
}

// ReturnRoutabilityFailed reports a check that got no answer, or whose
// answer had to be discarded because its pair changed (Restarted).
type ReturnRoutabilityFailed struct {
	MsgID     uint32
	Remote    netip.AddrPort
	Restarted bool
}

// NATChanged reports new NAT detection results for the IKE SA pair.
type NATChanged struct {
	Here, Peer bool
}

// UnexpectedNAT reports a NO_NATS_ALLOWED mismatch: Detected is true at the
// exchange responder (which answered UNEXPECTED_NAT_DETECTED), false at the
// exchange initiator that received the notify (M54–M56).
type UnexpectedNAT struct {
	MsgID    uint32
	Observed Pair
	Detected bool
}

// PathTestStarted reports a path test over Pairs with request MsgID (M57).
type PathTestStarted struct {
	MsgID uint32
	Pairs []Pair
}

// PathTestResult reports the end of a path test. Passed means Pair answered
// a request sent on it alone; Restarted means the answer came on Pair but the
// request had been sent on several pairs, so a new request is sent on Pair
// (M44, M60, RFC 4621 §6.2); otherwise no candidate pair answered (a Pair is
// then a pair the request was never sent on, where the answer came instead).
// NATChecked
// says the answer to a request sent on Pair alone carried NAT-D, and
// NATHere/NATPeer what it showed about Pair.
type PathTestResult struct {
	MsgID      uint32
	Pair       Pair
	Passed     bool
	Restarted  bool
	NATChecked bool
	NATHere    bool
	NATPeer    bool
}

// AddressListAcknowledged reports the answer to an INFORMATIONAL request
// that carried only our address list (M16, M34); Error is the error notify
// of a refusal, 0 when the peer accepted it.
type AddressListAcknowledged struct {
	MsgID uint32
	Error wire.NotifyType
}

// StrayTraffic reports a packet of the SA on a pair other than the current
// one: it is not taken as liveness (RFC 4621 §5.5.2, M69).
type StrayTraffic struct {
	Src, Dst netip.AddrPort
	IKE      bool
}

// Ignored reports a message the engine dropped or answered without acting.
type Ignored struct {
	MsgID  uint32
	Reason string
}

// SAClosed reports that the IKE SA (and with it every IPsec SA) is gone:
// Cause for code, Reason for people.
type SAClosed struct {
	Cause  CloseCause
	Reason string
}

func (Send) isOutput()                     {}
func (Established) isOutput()              {}
func (AddressesUpdated) isOutput()         {}
func (TrafficMoved) isOutput()             {}
func (UpdateConfirmed) isOutput()          {}
func (UpdateRejected) isOutput()           {}
func (PeerAddressesChanged) isOutput()     {}
func (ReturnRoutabilityStarted) isOutput() {}
func (ReturnRoutabilityPassed) isOutput()  {}
func (ReturnRoutabilityFailed) isOutput()  {}
func (NATChanged) isOutput()               {}
func (UnexpectedNAT) isOutput()            {}
func (PathTestStarted) isOutput()          {}
func (PathTestResult) isOutput()           {}
func (AddressListAcknowledged) isOutput()  {}
func (StrayTraffic) isOutput()             {}
func (Ignored) isOutput()                  {}
func (SAClosed) isOutput()                 {}

func (o Send) String() string {
	return fmt.Sprintf("send %s->%s %s", o.Src, o.Dst, FormatMessage(o.Msg))
}

func (o Established) String() string {
	return fmt.Sprintf("established %s mobike=%t nat-here=%t nat-peer=%t", o.Pair, o.MOBIKE, o.NATHere, o.NATPeer)
}

func (o AddressesUpdated) String() string {
	return fmt.Sprintf("ike-addresses #%d %s", o.MsgID, o.Pair)
}

func (o TrafficMoved) String() string {
	return fmt.Sprintf("traffic-moved %s encap=%t", o.Pair, o.Encap)
}

func (o UpdateConfirmed) String() string {
	return fmt.Sprintf("update-confirmed #%d %s", o.MsgID, o.Pair)
}

func (o UpdateRejected) String() string {
	return fmt.Sprintf("update-rejected #%d %s %s reverted=%s", o.MsgID, o.Pair, o.Reason, o.Reverted)
}

func (o PeerAddressesChanged) String() string {
	s := make([]string, len(o.Addrs))
	for i, a := range o.Addrs {
		s[i] = a.String()
	}
	return fmt.Sprintf("peer-addresses #%d {%s}", o.MsgID, strings.Join(s, " "))
}

func (o ReturnRoutabilityStarted) String() string {
	return fmt.Sprintf("rr-started #%d %s", o.MsgID, o.Remote)
}

func (o ReturnRoutabilityPassed) String() string {
	return fmt.Sprintf("rr-passed #%d %s", o.MsgID, o.Remote)
}

func (o ReturnRoutabilityFailed) String() string {
	return fmt.Sprintf("rr-failed #%d %s restarted=%t", o.MsgID, o.Remote, o.Restarted)
}

func (o NATChanged) String() string {
	return fmt.Sprintf("nat here=%t peer=%t", o.Here, o.Peer)
}

func (o UnexpectedNAT) String() string {
	return fmt.Sprintf("unexpected-nat #%d %s detected=%t", o.MsgID, o.Observed, o.Detected)
}

func (o PathTestStarted) String() string {
	s := make([]string, len(o.Pairs))
	for i, p := range o.Pairs {
		s[i] = p.String()
	}
	return fmt.Sprintf("path-test #%d [%s]", o.MsgID, strings.Join(s, " "))
}

func (o PathTestResult) String() string {
	switch {
	case o.Passed && o.NATChecked:
		return fmt.Sprintf("path-test #%d passed %s nat-here=%t nat-peer=%t", o.MsgID, o.Pair, o.NATHere, o.NATPeer)
	case o.Passed:
		return fmt.Sprintf("path-test #%d passed %s", o.MsgID, o.Pair)
	case o.Restarted:
		return fmt.Sprintf("path-test #%d answered on %s after several pairs: restart", o.MsgID, o.Pair)
	}
	if o.Pair.Local.IsValid() {
		return fmt.Sprintf("path-test #%d failed, answered on %s", o.MsgID, o.Pair)
	}
	return fmt.Sprintf("path-test #%d failed", o.MsgID)
}

func (o StrayTraffic) String() string {
	kind := "esp"
	if o.IKE {
		kind = "ike"
	}
	return fmt.Sprintf("stray-%s %s->%s not liveness", kind, o.Src, o.Dst)
}

func (o AddressListAcknowledged) String() string {
	if o.Error != 0 {
		return fmt.Sprintf("address-list #%d refused: %s", o.MsgID, o.Error)
	}
	return fmt.Sprintf("address-list #%d acknowledged", o.MsgID)
}

func (o Ignored) String() string { return fmt.Sprintf("ignored #%d %s", o.MsgID, o.Reason) }

func (o SAClosed) String() string { return "sa-closed " + o.Reason }

// FormatMessage renders a message compactly for traces: exchange, request or
// response, Message ID and the payloads (notify data only where it is short
// and deterministic: addresses and NO_NATS_ALLOWED).
func FormatMessage(m *wire.Message) string {
	if m == nil {
		return "<nil>"
	}
	dir := "req"
	if m.IsResponse() {
		dir = "resp"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s #%d [", m.Exchange, dir, m.MessageID)
	for i, p := range m.Payloads {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch p := p.(type) {
		case *wire.Notify:
			b.WriteString(p.Type.String())
			switch p.Type {
			case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
				if a, err := p.Address(); err == nil {
					b.WriteString("(" + a.String() + ")")
				}
			case wire.NotifyNoNATsAllowed:
				if s, d, err := p.NoNATsAllowedAddrs(); err == nil {
					b.WriteString("(" + s.String() + "->" + d.String() + ")")
				}
			case wire.NotifyCookie2:
				fmt.Fprintf(&b, "(%dB)", len(p.Data))
			}
		case *wire.Delete:
			b.WriteString("D(" + p.Protocol.String() + ")")
		default:
			b.WriteString(p.PayloadType().String())
		}
	}
	b.WriteByte(']')
	return b.String()
}
