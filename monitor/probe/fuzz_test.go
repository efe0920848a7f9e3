package probe

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func fuzzSeeds(f *testing.F) {
	for _, v := range []string{vecA, vecB, vecC1, vecC2} {
		f.Add(mustHex(f, v), false)
	}
	d, _ := AppendSender(nil, &SenderPacket{Seq: 7, Timestamp: vecT1, ErrorEstimate: vecErr, SSID: 0x1234}, STAMPAuthenticated, vecKey)
	f.Add(d, true)
	c1 := mustHex(f, vecC1)
	f.Add(append(c1, AppendHMACTLV(bytes.Clone(c1[44:]), TLVFlagU, vecKey, 8)[48:]...), false)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 14), true)
}

func modeOf(auth bool) STAMPMode {
	if auth {
		return STAMPAuthenticated
	}
	return STAMPUnauthenticated
}

func FuzzDecodeSender(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, auth bool) {
		p, err := DecodeSender(b, modeOf(auth), vecKey)
		if err != nil {
			return
		}
		// re-encoding keeps the fields (MBZ octets become zero)
		enc, err := AppendSender(nil, &p, modeOf(auth), vecKey)
		if err != nil || len(enc) != len(b) {
			t.Fatalf("re-encode: %d octets, %v", len(enc), err)
		}
		q, err := DecodeSender(enc, modeOf(auth), vecKey)
		if err != nil || q.Seq != p.Seq || q.Timestamp != p.Timestamp || q.SSID != p.SSID || q.ErrorEstimate != p.ErrorEstimate {
			t.Fatalf("round trip: %+v vs %+v, %v", q, p, err)
		}
	})
}

func FuzzDecodeReflector(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, auth bool) {
		p, err := DecodeReflector(b, modeOf(auth), vecKey)
		if err != nil {
			return
		}
		enc, err := AppendReflector(nil, &p, modeOf(auth), vecKey)
		if err != nil || len(enc) != len(b) {
			t.Fatalf("re-encode: %d octets, %v", len(enc), err)
		}
		q, err := DecodeReflector(enc, modeOf(auth), vecKey)
		if err != nil || q.SenderSeq != p.SenderSeq || q.ReceiveTimestamp != p.ReceiveTimestamp || q.SenderTTL != p.SenderTTL {
			t.Fatalf("round trip: %+v vs %+v, %v", q, p, err)
		}
	})
}

func FuzzDecodeTLVs(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, _ bool) {
		tlvs, err := DecodeTLVs(b)
		var enc []byte
		for _, x := range tlvs {
			enc = AppendTLV(enc, x)
		}
		if !bytes.HasPrefix(b, enc) || (err == nil) != (len(enc) == len(b)) {
			t.Fatalf("tlvs re-encode to %x of %x (err %v)", enc, b, err)
		}
		for _, x := range tlvs {
			if x.Type == TLVLocation {
				DecodeLocation(x.Value) // must not panic
			}
		}
	})
}

func FuzzDecodeLocation(f *testing.F) {
	f.Add(LocationRequest())
	f.Add(mustHex(f, vecC2)[48:])
	f.Add([]byte{0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		loc, err := DecodeLocation(v)
		if err == nil && (loc.Src.IsValid() && loc.Src.IsUnspecified()) {
			t.Fatalf("unspecified address reported: %+v", loc)
		}
	})
}

// FuzzReflect checks the reflector's safety rules on arbitrary input: no
// panic, a reply exactly as long as the request, and none for short or
// unauthenticated requests in authenticated mode.
func FuzzReflect(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, auth bool) {
		p := ReflectParams{Mode: modeOf(auth), Key: vecKey,
			Src: netip.MustParseAddrPort("192.0.2.1:4000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:862")}
		rep, err := Reflect(b, p)
		if err != nil {
			if rep != nil {
				t.Fatal("reply with error")
			}
			return
		}
		if len(rep) != len(b) {
			t.Fatalf("reply %d octets for a %d-octet request", len(rep), len(b))
		}
		if _, err := DecodeReflector(rep, modeOf(auth), vecKey); err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
	})
}

// FuzzParseReply feeds arbitrary replies to the Session-Sender's parser.
func FuzzParseReply(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, auth bool) {
		var key []byte
		if auth {
			key = vecKey
		}
		e := newSTAMPEndpoint(&sharedSock{local: netip.MustParseAddrPort("192.168.1.20:50000")}, netip.MustParseAddrPort("198.51.100.10:862"), key, 10, RealClock())
		e.ssid = 0x1234
		e.parseReply(b)
	})
}

// FuzzReceive feeds arbitrary packets and control data to the receive path
// of a shared ICMP socket (IPv4 header parsing, control messages, echo
// reply decoding): nothing panics, and only a well-formed echo reply from the
// pair's peer to its address, with the socket's ID, reaches the prober.
func FuzzReceive(f *testing.F) {
	local, remote := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.3.0.2")
	nonce := bytes.Repeat([]byte{0xab}, icmpNonceLen)
	reply := appendEcho(nil, false, 0x1234, 7, nonce)
	reply[0] = icmpEchoReply
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 3, 0, 2, 10, 1, 0, 2}
	f.Add(append(ip, reply...), []byte{})
	f.Add(append(ip, reply[:5]...), []byte{})
	f.Add([]byte{0x4f}, []byte{1, 2, 3})
	tsCmsg := make([]byte, unix.CmsgSpace(16))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&tsCmsg[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	f.Add(append(ip, reply...), tsCmsg)
	f.Fuzz(func(t *testing.T, b, oob []byte) {
		s := &sharedSock{key: sockKey{dev: "eth0"}, icmpID: 0x1234, ipHdr: true, clock: RealClock(), peers: map[pairKey]endpoint{}}
		ep := newICMPEndpoint(s, local, remote)
		var got []Reply
		ep.setDeliver(func(r Reply) { got = append(got, r) })
		s.peers[pairKey{local: local, remote: remote}] = ep
		now := time.Now()
		s.dispatch(b, oob, netip.Addr{}, now, now)
		for _, r := range got {
			if len(b) < 28 || netip.AddrFrom4([4]byte(b[12:16])) != remote || netip.AddrFrom4([4]byte(b[16:20])) != local {
				t.Fatalf("delivered a reply from a packet not from the peer to us: %x", b)
			}
			if r.At.After(now) || now.Sub(r.At) >= time.Second {
				t.Fatalf("arrival time %v, now %v", r.At, now)
			}
		}
	})
}

// FuzzEchoReply: parseEchoReply accepts exactly the replies appendEcho's
// layout describes.
func FuzzEchoReply(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0x12, 0x34, 0, 7, 1, 2}, false)
	f.Add([]byte{129, 0, 0, 0, 0x12, 0x34, 0, 7}, true)
	f.Add([]byte{8, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		id, seq, data, ok := parseEchoReply(b, v6)
		if !ok {
			return
		}
		req := appendEcho(nil, v6, id, seq, data)
		if len(req) != len(b) || !bytes.Equal(req[4:], b[4:]) {
			t.Fatalf("reply %x does not match the request layout %x", b, req)
		}
	})
}
