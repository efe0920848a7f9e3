package vici

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	govici "github.com/strongswan/govici/vici"

	"github.com/mobiked/mobiked/mobike"
)

// IKESA is the typed form of charon's IKE_SA data (vici_query.c list_ike,
// 5.9.8), as found in list-sa and in the ike-*/child-* events. Hex values
// (SPIs, if-ids) stay strings as charon prints them.
type IKESA struct {
	Conn         string
	UniqueID     uint32
	Version      int
	State        mobike.IKEState
	LocalHost    netip.Addr // zero for %any
	LocalPort    uint16
	LocalID      string
	RemoteHost   netip.Addr
	RemotePort   uint16
	RemoteID     string
	Initiator    bool
	InitiatorSPI string
	ResponderSPI string
	NATLocal     bool
	NATRemote    bool
	NATFake      bool
	NATAny       bool
	IfIDIn       string
	IfIDOut      string
	EncrAlg      string
	PRFAlg       string
	DHGroup      string
	Established  int64 // seconds, -1 when absent
	LocalVIPs    []netip.Addr
	RemoteVIPs   []netip.Addr
	TasksActive  []string
	Children     []ChildSA
}

// ChildSA is the typed form of list_child data.
type ChildSA struct {
	Section    string // key of the section (<name>-<uniqueid> in list-sa)
	Name       string
	UniqueID   uint32
	ReqID      uint32
	State      string
	Mode       string
	Protocol   string
	Encap      bool
	SPIIn      string
	SPIOut     string
	MarkIn     string
	MarkOut    string
	IfIDIn     string
	IfIDOut    string
	BytesIn    uint64
	BytesOut   uint64
	PacketsIn  uint64
	PacketsOut uint64
	LocalTS    []netip.Prefix
	RemoteTS   []netip.Prefix
	Installed  bool // spi-in present
}

// SA converts to the core's view.
func (s IKESA) SA() mobike.SA {
	return mobike.SA{
		Conn:      s.Conn,
		UniqueID:  s.UniqueID,
		State:     s.State,
		Initiator: s.Initiator,
		Local:     addrPort(s.LocalHost, s.LocalPort),
		Remote:    addrPort(s.RemoteHost, s.RemotePort),
		NATLocal:  s.NATLocal,
		NATRemote: s.NATRemote,
		NATFake:   s.NATFake,
		VIPs:      slices.Clone(s.LocalVIPs),
	}
}

func addrPort(a netip.Addr, p uint16) netip.AddrPort {
	if !a.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, p)
}

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("vici: decode")

func decodeErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrDecode, fmt.Sprintf(format, a...))
}

// str returns the string value under k ("" when absent or not a value).
func str(m *govici.Message, k string) string {
	s, _ := m.Get(k).(string)
	return s
}

func list(m *govici.Message, k string) []string {
	l, _ := m.Get(k).([]string)
	return l
}

func section(m *govici.Message, k string) *govici.Message {
	s, _ := m.Get(k).(*govici.Message)
	return s
}

// sections returns the keys of m's sub-sections in order.
func sections(m *govici.Message) []string {
	var out []string
	for _, k := range m.Keys() {
		if _, ok := m.Get(k).(*govici.Message); ok {
			out = append(out, k)
		}
	}
	return out
}

func yes(m *govici.Message, k string) bool { return str(m, k) == "yes" }

// parseHost parses a host address; %any, %any6 and empty give the zero Addr.
func parseHost(s string) (netip.Addr, error) {
	switch s {
	case "", "%any", "%any4", "%any6", "0.0.0.0", "::":
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, decodeErr("host %q", s)
	}
	return a.Unmap(), nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, nil
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, decodeErr("port %q", s)
	}
	return uint16(p), nil
}

func parseUint32(s, what string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, decodeErr("%s %q", what, s)
	}
	return uint32(v), nil
}

func parseAddrs(l []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range l {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, decodeErr("address %q", s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// parseTS parses charon's traffic selectors ("10.9.0.0/24", "0.0.0.0/0",
// "10.1.2.3/32[udp/500]" style suffixes are stripped; ranges are skipped).
func parseTS(l []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range l {
		if i := strings.IndexByte(s, '['); i >= 0 {
			s = s[:i]
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// decodeIKESA decodes one list_ike section; conn is its key (config name).
func decodeIKESA(conn string, m *govici.Message) (IKESA, error) {
	if m == nil {
		return IKESA{}, decodeErr("ike-sa %q: not a section", conn)
	}
	s := IKESA{Conn: conn, Established: -1}
	var err error
	if s.UniqueID, err = parseUint32(str(m, "uniqueid"), "uniqueid"); err != nil {
		return IKESA{}, fmt.Errorf("ike-sa %q: %w", conn, err)
	}
	if v := str(m, "version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return IKESA{}, decodeErr("ike-sa %q: version %q", conn, v)
		}
		s.Version = n
	}
	s.State = mobike.ParseIKEState(str(m, "state"))
	if s.LocalHost, err = parseHost(str(m, "local-host")); err != nil {
		return IKESA{}, err
	}
	if s.LocalPort, err = parsePort(str(m, "local-port")); err != nil {
		return IKESA{}, err
	}
	if s.RemoteHost, err = parseHost(str(m, "remote-host")); err != nil {
		return IKESA{}, err
	}
	if s.RemotePort, err = parsePort(str(m, "remote-port")); err != nil {
		return IKESA{}, err
	}
	s.LocalID = str(m, "local-id")
	s.RemoteID = str(m, "remote-id")
	s.Initiator = yes(m, "initiator")
	s.InitiatorSPI = str(m, "initiator-spi")
	s.ResponderSPI = str(m, "responder-spi")
	s.NATLocal = yes(m, "nat-local")
	s.NATRemote = yes(m, "nat-remote")
	s.NATFake = yes(m, "nat-fake")
	s.NATAny = yes(m, "nat-any")
	s.IfIDIn = str(m, "if-id-in")
	s.IfIDOut = str(m, "if-id-out")
	s.EncrAlg = str(m, "encr-alg")
	s.PRFAlg = str(m, "prf-alg")
	s.DHGroup = str(m, "dh-group")
	if v := str(m, "established"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return IKESA{}, decodeErr("ike-sa %q: established %q", conn, v)
		}
		s.Established = n
	}
	if s.LocalVIPs, err = parseAddrs(list(m, "local-vips")); err != nil {
		return IKESA{}, err
	}
	if s.RemoteVIPs, err = parseAddrs(list(m, "remote-vips")); err != nil {
		return IKESA{}, err
	}
	s.TasksActive = slices.Clone(list(m, "tasks-active"))
	if cs := section(m, "child-sas"); cs != nil {
		for _, k := range sections(cs) {
			c, err := decodeChild(k, section(cs, k))
			if err != nil {
				return IKESA{}, fmt.Errorf("ike-sa %q: %w", conn, err)
			}
			s.Children = append(s.Children, c)
		}
	}
	return s, nil
}

func decodeChild(key string, m *govici.Message) (ChildSA, error) {
	c := ChildSA{Section: key, Name: str(m, "name")}
	var err error
	if v := str(m, "uniqueid"); v != "" {
		if c.UniqueID, err = parseUint32(v, "child uniqueid"); err != nil {
			return ChildSA{}, err
		}
	}
	if v := str(m, "reqid"); v != "" {
		if c.ReqID, err = parseUint32(v, "reqid"); err != nil {
			return ChildSA{}, err
		}
	}
	c.State = str(m, "state")
	c.Mode = str(m, "mode")
	c.Protocol = str(m, "protocol")
	c.Encap = yes(m, "encap")
	c.SPIIn = str(m, "spi-in")
	c.SPIOut = str(m, "spi-out")
	c.Installed = c.SPIIn != ""
	c.MarkIn = str(m, "mark-in")
	c.MarkOut = str(m, "mark-out")
	c.IfIDIn = str(m, "if-id-in")
	c.IfIDOut = str(m, "if-id-out")
	c.BytesIn, _ = strconv.ParseUint(str(m, "bytes-in"), 10, 64)
	c.BytesOut, _ = strconv.ParseUint(str(m, "bytes-out"), 10, 64)
	c.PacketsIn, _ = strconv.ParseUint(str(m, "packets-in"), 10, 64)
	c.PacketsOut, _ = strconv.ParseUint(str(m, "packets-out"), 10, 64)
	c.LocalTS = parseTS(list(m, "local-ts"))
	c.RemoteTS = parseTS(list(m, "remote-ts"))
	return c, nil
}

// decodeListSA decodes one list-sa event (one IKE_SA under its config name).
func decodeListSA(m *govici.Message) ([]IKESA, error) {
	var out []IKESA
	for _, k := range sections(m) {
		s, err := decodeIKESA(k, section(m, k))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeListConn decodes one list-conn event.
func decodeListConn(m *govici.Message) []mobike.Conn {
	var out []mobike.Conn
	for _, k := range sections(m) {
		c := section(m, k)
		conn := mobike.Conn{Name: k, LocalAddrs: slices.Clone(list(c, "local_addrs"))}
		for _, r := range list(c, "remote_addrs") {
			// remote_addrs may hold names, ranges or %any: keep addresses only.
			if a, err := netip.ParseAddr(r); err == nil {
				conn.RemoteAddrs = append(conn.RemoteAddrs, a.Unmap())
			}
		}
		out = append(out, conn)
	}
	return out
}

// firstIKE returns the single IKE section of an event (the section named
// after the connection).
func firstIKE(m *govici.Message) (string, *govici.Message, error) {
	ks := sections(m)
	if len(ks) == 0 {
		return "", nil, decodeErr("event has no ike-sa section")
	}
	return ks[0], section(m, ks[0]), nil
}

// decodeEvent converts one charon event into core events. Events that carry
// nothing for the core (unrecognised log lines, child events of an SA that is
// not established) give none.
func decodeEvent(name string, m *govici.Message) ([]mobike.Event, error) {
	switch name {
	case "ike-updown":
		conn, sec, err := firstIKE(m)
		if err != nil {
			return nil, fmt.Errorf("ike-updown: %w", err)
		}
		sa, err := decodeIKESA(conn, sec)
		if err != nil {
			return nil, fmt.Errorf("ike-updown: %w", err)
		}
		if yes(m, "up") {
			return []mobike.Event{mobike.EvSAUp{SA: sa.SA()}}, nil
		}
		return []mobike.Event{mobike.EvSADown{Conn: sa.Conn, UniqueID: sa.UniqueID}}, nil
	case "ike-update":
		conn, sec, err := firstIKE(m)
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		id, err := parseUint32(str(sec, "uniqueid"), "uniqueid")
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		ev := mobike.EvIKEUpdate{Conn: conn, UniqueID: id}
		lh, err := parseHost(str(m, "local-host"))
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		lp, err := parsePort(str(m, "local-port"))
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		rh, err := parseHost(str(m, "remote-host"))
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		rp, err := parsePort(str(m, "remote-port"))
		if err != nil {
			return nil, fmt.Errorf("ike-update: %w", err)
		}
		ev.NewLocal, ev.NewRemote = addrPort(lh, lp), addrPort(rh, rp)
		return []mobike.Event{ev}, nil
	case "ike-rekey":
		conn, sec, err := firstIKE(m)
		if err != nil {
			return nil, fmt.Errorf("ike-rekey: %w", err)
		}
		oldSA, err := decodeIKESA(conn, section(sec, "old"))
		if err != nil {
			return nil, fmt.Errorf("ike-rekey: old: %w", err)
		}
		newSA, err := decodeIKESA(conn, section(sec, "new"))
		if err != nil {
			return nil, fmt.Errorf("ike-rekey: new: %w", err)
		}
		return []mobike.Event{mobike.EvSARekey{OldID: oldSA.UniqueID, New: newSA.SA()}}, nil
	case "child-updown", "child-rekey":
		// The IKE_SA data rides along: refresh the core's view of an
		// established SA (a CHILD_SA rekey follows every MOBIKE move with
		// kernel-libipsec). child-rekey sections hold old/new, which the
		// IKE decoder ignores.
		conn, sec, err := firstIKE(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		sa, err := decodeIKESA(conn, sec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if sa.State != mobike.IKEEstablished {
			return nil, nil
		}
		return []mobike.Event{mobike.EvSAUp{SA: sa.SA()}}, nil
	}
	return nil, nil
}
