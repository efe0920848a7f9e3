package vicitest

import "strconv"

// SA describes an IKE_SA for the builders below.
type SA struct {
	Conn       string
	UniqueID   int
	State      string // default ESTABLISHED
	Local      string // host
	LocalPort  int
	Remote     string
	RemotePort int
	Initiator  bool
	NATFake    bool
	VIPs       []string
	// The CHILD_SA's traffic counters, listed when any is set.
	BytesIn, BytesOut, PacketsIn, PacketsOut int
}

// IKE renders the list_ike data of s the way charon 5.9.8 does (keys in
// charon's order; initiator and nat-* present only when true).
func (s SA) IKE() *Msg {
	state := s.State
	if state == "" {
		state = "ESTABLISHED"
	}
	lp, rp := s.LocalPort, s.RemotePort
	if lp == 0 {
		lp = 4500
	}
	if rp == 0 {
		rp = 4500
	}
	m := M("uniqueid", strconv.Itoa(s.UniqueID), "version", "2", "state", state,
		"local-host", s.Local, "local-port", strconv.Itoa(lp), "local-id", s.Local,
		"remote-host", s.Remote, "remote-port", strconv.Itoa(rp), "remote-id", s.Remote)
	if s.Initiator {
		m.Items = append(m.Items, Item{Key: "initiator", Kind: KindValue, Value: "yes"})
	}
	m.Items = append(m.Items,
		Item{Key: "initiator-spi", Kind: KindValue, Value: "8e1c4a2f0b3d5e61"},
		Item{Key: "responder-spi", Kind: KindValue, Value: "5a7d9c0e1f2b3c4d"})
	if s.NATFake {
		m.Items = append(m.Items,
			Item{Key: "nat-fake", Kind: KindValue, Value: "yes"},
			Item{Key: "nat-any", Kind: KindValue, Value: "yes"})
	}
	m.Items = append(m.Items, M("encr-alg", "AES_GCM_16", "encr-keysize", "128", "prf-alg", "PRF_HMAC_SHA2_256",
		"dh-group", "CURVE_25519", "established", "3", "rekey-time", "13000").Items...)
	if len(s.VIPs) > 0 {
		m.Items = append(m.Items, Item{Key: "local-vips", Kind: KindList, List: s.VIPs})
	}
	child := M("name", "lab", "uniqueid", strconv.Itoa(s.UniqueID), "reqid", "1",
		"state", "INSTALLED", "mode", "TUNNEL", "protocol", "ESP", "encap", "yes",
		"spi-in", "c1a2b3c4", "spi-out", "d5e6f708")
	if s.BytesIn != 0 || s.BytesOut != 0 || s.PacketsIn != 0 || s.PacketsOut != 0 {
		child.Items = append(child.Items, M("bytes-in", strconv.Itoa(s.BytesIn), "packets-in", strconv.Itoa(s.PacketsIn),
			"bytes-out", strconv.Itoa(s.BytesOut), "packets-out", strconv.Itoa(s.PacketsOut)).Items...)
	}
	child.Items = append(child.Items, M("local-ts", []string{"10.50.0.1/32"}, "remote-ts", []string{"10.9.0.0/24"}).Items...)
	m.Items = append(m.Items, Item{Key: "child-sas", Kind: KindSection, Section: M("lab-"+strconv.Itoa(s.UniqueID), child)})
	return m
}

// Named returns s as a list-sas entry.
func (s SA) Named() Named { return Named{Name: s.Conn, Msg: s.IKE()} }

// IKEUpdown is an ike-updown event for s.
func IKEUpdown(s SA, up bool) *Msg {
	m := &Msg{}
	if up {
		m.Items = append(m.Items, Item{Key: "up", Kind: KindValue, Value: "yes"})
	}
	m.Items = append(m.Items, Item{Key: s.Conn, Kind: KindSection, Section: s.IKE()})
	return m
}

// IKEUpdate is an ike-update event: s holds the old endpoints, the new ones
// are given.
func IKEUpdate(s SA, newLocal string, newLocalPort int, newRemote string, newRemotePort int) *Msg {
	return M("local-host", newLocal, "local-port", strconv.Itoa(newLocalPort),
		"remote-host", newRemote, "remote-port", strconv.Itoa(newRemotePort), s.Conn, s.IKE())
}

// IKERekey is an ike-rekey event.
func IKERekey(old, nw SA) *Msg {
	return M(old.Conn, M("old", old.IKE(), "new", nw.IKE()))
}

// Log is a log event.
func Log(conn string, id int, msg string) *Msg {
	return M("group", "IKE", "level", "1", "thread", "12", "ikesa-name", conn,
		"ikesa-uniqueid", strconv.Itoa(id), "msg", msg)
}
