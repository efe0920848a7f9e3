// Package ike is the IKE-level path probe: it sends one IKE_SA_INIT request
// (built with mobike/wire) from a given local address, port and uplink device
// to a peer's IKE port, waits for the response, and reports reachability, RTT
// and the NAT verdict of RFC 7296 §2.23 (our address was translated when the
// responder's NAT_DETECTION_DESTINATION_IP hash is not the hash of the address
// and port we sent from).
//
// A probe proves that an IKE daemon answers on the pair, which ICMP and STAMP
// cannot. Each probe the responder accepts leaves a half-open IKE SA there
// until it times out (charon: 30 s by default; it ignores a peer address with
// 5 of them), so repeated probes should offer RefusedProposal, which is
// answered without state; a response asking for a COOKIE is answered once
// with the cookie.
package ike

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/wire"
)

// DefaultTimeout is used when Config.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// maxCookieRounds bounds how often a COOKIE request is answered; a peer that
// keeps asking is reachable, with an unknown NAT verdict.
const maxCookieRounds = 2

// maxDatagram bounds a received IKE_SA_INIT response (charon's are ~300 octets;
// with certificate requests a few KiB).
const maxDatagram = 8192

// Config says where one probe goes.
type Config struct {
	// Local is the source address and port. An invalid or unspecified address
	// lets the kernel choose; port 0 picks an ephemeral port (use it: charon
	// binds 500 and 4500 on every address of its host).
	Local netip.AddrPort
	// Device is the uplink the probe must leave through (SO_BINDTODEVICE); ""
	// leaves the choice to routing.
	Device string
	// Remote is the peer's IKE address and port (normally 500).
	Remote netip.AddrPort
	// Timeout bounds the wait for the response (DefaultTimeout when zero); the
	// context may end the probe earlier.
	Timeout time.Duration
	// Proposals offered; wire.DefaultIKEProposal() (aes128gcm16-prfsha256-
	// x25519) when empty. Only the responder's acceptance matters: no keys
	// are derived.
	Proposals []wire.Proposal
	// Group of the first key share (DHCurve25519 when zero). When the peer
	// answers INVALID_KE_PAYLOAD naming a group wire.GenerateKeyShare
	// supports, the probe retries once with that group.
	Group wire.DHGroup
}

// Result is what one probe learned. A probe that got no answer in time has
// Reachable false and no error.
type Result struct {
	Reachable bool          // a matching IKE_SA_INIT response arrived
	RTT       time.Duration // request sent to matching response received
	NAT       mobike.NATVerdict
	// PeerNAT is set when no NAT_DETECTION_SOURCE_IP of the response matches
	// the peer's address. strongSwan fakes that hash when it forces UDP
	// encapsulation, so it does not prove a NAT near the peer.
	PeerNAT  bool
	Local    netip.AddrPort     // address and port the request was sent from
	Response *wire.InitResponse // the parsed response (nil when unreachable)
	Cookies  int                // COOKIE rounds before the final response
	Group    wire.DHGroup       // key-share group of the last request
	Refused  bool               // the peer host answered ICMP port unreachable
}

// ErrBadConfig reports an unusable Config.
var ErrBadConfig = errors.New("bad probe config")

// Probe runs one IKE probe. It creates its socket in the calling goroutine,
// so a caller that switched its OS thread into a network namespace gets a
// socket in that namespace. Errors are setup and socket failures; a peer that
// stays silent is Result{Reachable: false} with a nil error. A peer that
// answers with an error notify (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD) is
// reachable; its NAT verdict is unknown.
func Probe(ctx context.Context, cfg Config) (Result, error) {
	if !cfg.Remote.IsValid() || cfg.Remote.Port() == 0 {
		return Result{}, fmt.Errorf("ike probe: remote %v: %w", cfg.Remote, ErrBadConfig)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conn, err := dial(ctx, cfg)
	if err != nil {
		return Result{}, fmt.Errorf("ike probe %v->%v: %w", cfg.Local, cfg.Remote, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return Result{}, fmt.Errorf("ike probe: set deadline: %w", err)
		}
	}
	// Expire the socket when the caller cancels, so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	req := wire.InitRequest{Proposals: cfg.Proposals, Group: cfg.Group, Local: local, Remote: cfg.Remote}
	res, err := exchange(ctx, conn, req)
	if err != nil {
		return Result{}, fmt.Errorf("ike probe %v->%v: %w", local, cfg.Remote, err)
	}
	return res, nil
}

// conn is the part of *net.UDPConn the exchange uses; tests substitute it.
type conn interface {
	Write(b []byte) (int, error)
	Read(b []byte) (int, error)
}

// exchange sends IKE_SA_INIT requests on a connected socket and reads until
// the matching response (COOKIE answered at most maxCookieRounds times) or
// the socket deadline passes.
func exchange(ctx context.Context, c conn, req wire.InitRequest) (Result, error) {
	res := Result{Local: req.Local}
	if _, err := rand.Read(req.SPIi[:]); err != nil {
		return res, err
	}
	req.SPIi[0] |= 0x80 // never zero
	spi := req.SPIi
	req.Nonce = make([]byte, 32)
	if _, err := rand.Read(req.Nonce); err != nil {
		return res, err
	}
	if req.Group == 0 {
		req.Group = wire.DHCurve25519
	}
	if err := newKeyShare(&req, req.Group); err != nil {
		return res, err
	}
	buf := make([]byte, maxDatagram)
	groupRetried := false
	for {
		res.Group = req.Group
		out, err := req.Message().Marshal()
		if err != nil {
			return res, err
		}
		sent := time.Now()
		if _, err := c.Write(out); err != nil {
			return res, fmt.Errorf("send: %w", err)
		}
		resp, err := readResponse(c, buf, spi)
		if err != nil {
			if isTimeout(err) {
				if errors.Is(ctx.Err(), context.Canceled) {
					return res, ctx.Err()
				}
				// No answer in time: unreachable, unless an earlier round
				// (COOKIE, INVALID_KE_PAYLOAD) was answered.
				return res, nil
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				res.Refused = true // ICMP port unreachable: no IKE there
				return res, nil
			}
			return res, fmt.Errorf("receive: %w", err)
		}
		// Any response to our fresh SPI proves the pair; later rounds only
		// try to get the NAT-D hashes.
		res.Reachable, res.RTT, res.Response = true, time.Since(sent), resp
		if resp.Cookie != nil && res.Cookies < maxCookieRounds {
			res.Cookies++
			req.Cookie = resp.Cookie
			continue
		}
		if resp.Error == wire.NotifyInvalidKEPayload && !groupRetried && resp.WantGroup != req.Group {
			if err := newKeyShare(&req, resp.WantGroup); err == nil {
				groupRetried = true
				continue
			}
		}
		nat := resp.DetectNAT(req.Local, req.Remote)
		switch {
		case !nat.Checked:
			res.NAT = mobike.NATUnknown
		case nat.LocalNAT:
			res.NAT = mobike.NATPresent
		default:
			res.NAT = mobike.NATNone
		}
		res.PeerNAT = nat.Checked && nat.RemoteNAT
		return res, nil
	}
}

// newKeyShare puts a fresh key share of group g into req.
func newKeyShare(req *wire.InitRequest, g wire.DHGroup) error {
	_, pub, err := wire.GenerateKeyShare(g, rand.Reader)
	if err != nil {
		return err
	}
	req.Group, req.KeyShare = g, pub
	return nil
}

// readResponse reads datagrams until one is an IKE_SA_INIT response to our
// SPI. Anything else (garbage, other SPIs, requests) is skipped: only a reply
// that echoes our fresh SPI counts (return routability).
func readResponse(c conn, buf []byte, spi wire.SPI) (*wire.InitResponse, error) {
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		m, err := wire.Parse(buf[:n])
		if err != nil || m.SPIi != spi {
			continue
		}
		r, err := wire.ParseInitResponse(m)
		if err != nil {
			continue
		}
		return r, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// dial opens a UDP socket bound to cfg.Local (and cfg.Device) and connected
// to cfg.Remote, so the kernel filters other sources and reports ICMP errors.
func dial(ctx context.Context, cfg Config) (*net.UDPConn, error) {
	network := "udp4"
	if cfg.Remote.Addr().Unmap().Is6() {
		network = "udp6"
	}
	d := net.Dialer{Control: bindToDevice(cfg.Device)}
	if cfg.Local.Addr().IsValid() || cfg.Local.Port() != 0 {
		d.LocalAddr = net.UDPAddrFromAddrPort(cfg.Local)
	}
	remote := netip.AddrPortFrom(cfg.Remote.Addr().Unmap(), cfg.Remote.Port())
	c, err := d.DialContext(ctx, network, remote.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// bindToDevice returns a socket Control that sets SO_BINDTODEVICE.
func bindToDevice(dev string) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		if dev == "" {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("bind to device %q: %w", dev, serr)
		}
		return nil
	}
}

// refusedEncrID is the encryption transform of RefusedProposal: a
// private-use ID (RFC 7296 §3.3.2: 1024–65535) that no implementation known
// to us assigns (strongSwan's own private IDs sit just above 1024).
const refusedEncrID uint16 = 65001

// RefusedProposal is an IKE proposal no responder can accept. A probe that
// offers only it is answered with NO_PROPOSAL_CHOSEN, and the responder keeps
// no state for it: unlike an accepted IKE_SA_INIT it leaves no half-open
// IKE SA behind, so it does not count towards the responder's per-peer
// half-open limit (charon: block_threshold, 5 per peer address for 30 s) and
// can be repeated at a path-probing rate. Its response carries no NAT-D
// payloads: the NAT verdict of such a probe is unknown.
func RefusedProposal() wire.Proposal {
	return wire.Proposal{
		Num:      1,
		Protocol: wire.ProtocolIKE,
		Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: refusedEncrID},
			{Type: wire.TransformPRF, ID: wire.PRFHMACSHA256},
			{Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)},
		},
	}
}
