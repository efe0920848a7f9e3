package probe

import (
	"bytes"
	"net/netip"
	"testing"
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
