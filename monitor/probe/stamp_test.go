package probe

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Vectors from /work/shared/docs/stamp-digest.md §8.

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex: %v", err)
	}
	return b
}

var (
	vecKey = func() []byte {
		k := make([]byte, 32)
		for i := range k {
			k[i] = byte(i)
		}
		return k
	}()
	vecT1  = NTPTimestamp(0xebe6bf4040000000)
	vecT2  = NTPTimestamp(0xebe6bf4043126e97)
	vecT3  = NTPTimestamp(0xebe6bf404315b573)
	vecErr = ErrorEstimate(0x9601)
)

const (
	vecA = `00 00 00 07 eb e6 bf 40 40 00 00 00 96 01 12 34
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
	00 00 00 00 00 00 00 00 00 00 00 00`
	vecB = `00 00 00 07 eb e6 bf 40 43 15 b5 73 96 01 12 34
	eb e6 bf 40 43 12 6e 97 00 00 00 07 eb e6 bf 40
	40 00 00 00 96 01 00 00 3d 00 00 00`
	vecC1 = `00 00 00 08 eb e6 bf 41 40 00 00 00 96 01 12 34
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
	00 00 00 00 00 00 00 00 00 00 00 00 80 02 00 2c
	00 00 00 00 80 04 00 10 00 00 00 00 00 00 00 00
	00 00 00 00 00 00 00 00 80 07 00 10 00 00 00 00
	00 00 00 00 00 00 00 00 00 00 00 00`
	vecC2 = `00 00 00 08 eb e6 bf 41 43 15 b5 73 96 01 12 34
	eb e6 bf 41 43 12 6e 97 00 00 00 08 eb e6 bf 41
	40 00 00 00 96 01 00 00 3d 00 00 00 00 02 00 2c
	03 5e 9c 41 00 05 00 10 c6 33 64 0a 00 00 00 00
	00 00 00 00 00 00 00 00 00 08 00 10 cb 00 71 07
	00 00 00 00 00 00 00 00 00 00 00 00`
	vecDHMAC  = `ec 47 be f5 7a e1 45 44 06 ac bc 6b 11 fb 2e de`
	vecD2HMAC = `de 8a 31 b9 31 a5 40 4d 79 2e 5c de 28 f2 cd 29`
	vecEHMAC  = `80 08 00 10 71 49 05 f6 68 2f 37 70 f0 e8 ee 98 73 ff a4 4e`
)

func TestSenderEncodeVectorA(t *testing.T) {
	got, err := AppendSender(nil, &SenderPacket{Seq: 7, Timestamp: vecT1, ErrorEstimate: vecErr, SSID: 0x1234}, STAMPUnauthenticated, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, vecA); !bytes.Equal(got, want) {
		t.Fatalf("got\n%x\nwant\n%x", got, want)
	}
	p, err := DecodeSender(got, STAMPUnauthenticated, nil)
	if err != nil || p.Seq != 7 || p.Timestamp != vecT1 || p.ErrorEstimate != vecErr || p.SSID != 0x1234 || len(p.TLVs) != 0 {
		t.Fatalf("decode: %+v %v", p, err)
	}
}

func TestReflectVectorB(t *testing.T) {
	req := mustHex(t, vecA)
	for i := 16; i < 44; i++ {
		req[i] = 0xff // MBZ must be ignored on receipt and zero on reply
	}
	got, err := Reflect(req, ReflectParams{RxTime: vecT2, TxTime: vecT3, ErrorEstimate: vecErr, TTL: 61})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, vecB); !bytes.Equal(got, want) {
		t.Fatalf("got\n%x\nwant\n%x", got, want)
	}
	rp, err := DecodeReflector(got, STAMPUnauthenticated, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RTT = (T4 − T1) − (T3 − T2) with T4 = 12:00:00.274100 → 24.05 ms
	t4 := time.Date(2025, 6, 1, 12, 0, 0, 274100000, time.UTC)
	rtt := t4.Sub(rp.SenderTimestamp.Time()) - rp.Timestamp.Time().Sub(rp.ReceiveTimestamp.Time())
	if d := rtt - 24050*time.Microsecond; d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("rtt %v, want 24.05ms", rtt)
	}
	if rp.SenderTTL != 61 || rp.SenderSeq != 7 {
		t.Fatalf("reflector packet %+v", rp)
	}
}

func TestReflectLocationVectorC(t *testing.T) {
	req := mustHex(t, vecC1)
	got, err := Reflect(req, ReflectParams{
		RxTime: vecT2 + 1<<32, TxTime: vecT3 + 1<<32, ErrorEstimate: vecErr, TTL: 61,
		Src: netip.MustParseAddrPort("203.0.113.7:40001"),
		Dst: netip.MustParseAddrPort("198.51.100.10:862"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, vecC2); !bytes.Equal(got, want) {
		t.Fatalf("got\n%x\nwant\n%x", got, want)
	}
	rp, err := DecodeReflector(got, STAMPUnauthenticated, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlvs, err := DecodeTLVs(rp.TLVs)
	if err != nil || len(tlvs) != 1 || tlvs[0].Type != TLVLocation || tlvs[0].Flags != 0 {
		t.Fatalf("tlvs %+v %v", tlvs, err)
	}
	loc, err := DecodeLocation(tlvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	want := Location{DstPort: 862, SrcPort: 40001, Dst: netip.MustParseAddr("198.51.100.10"), Src: netip.MustParseAddr("203.0.113.7")}
	if loc != want {
		t.Fatalf("location %+v, want %+v", loc, want)
	}
	// the sender's request TLV is what LocationRequest builds
	if !bytes.Equal(req[48:], LocationRequest()) {
		t.Fatalf("LocationRequest() = %x, want %x", LocationRequest(), req[48:])
	}
}

func TestReflectLocationIPv6AndPolicy(t *testing.T) {
	v := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	req, _ := AppendSender(nil, &SenderPacket{Seq: 1, TLVs: v}, STAMPUnauthenticated, nil)
	src := netip.MustParseAddrPort("[2001:db8::7]:40001")
	dst := netip.MustParseAddrPort("[2001:db8:1::10]:862")
	for _, hide := range []bool{false, true} {
		rep, err := Reflect(req, ReflectParams{Src: src, Dst: dst, HideLocation: hide})
		if err != nil {
			t.Fatal(err)
		}
		tlvs, _ := DecodeTLVs(rep[44:])
		// sub-types rewritten 4→6, 7→9
		if tlvs[0].Value[5] != subDstIPv6 || tlvs[0].Value[25] != subSrcIPv6 {
			t.Fatalf("hide=%v sub-types %d %d", hide, tlvs[0].Value[5], tlvs[0].Value[25])
		}
		loc, err := DecodeLocation(tlvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		want := Location{DstPort: 862, SrcPort: 40001, Dst: dst.Addr(), Src: src.Addr()}
		if hide {
			want = Location{}
		}
		if loc != want {
			t.Fatalf("hide=%v location %+v, want %+v", hide, loc, want)
		}
	}
}

func TestAuthenticatedVectorsD(t *testing.T) {
	got, err := AppendSender(nil, &SenderPacket{Seq: 7, Timestamp: vecT1, ErrorEstimate: vecErr, SSID: 0x1234}, STAMPAuthenticated, vecKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 112 || !bytes.Equal(got[96:], mustHex(t, vecDHMAC)) {
		t.Fatalf("sender hmac %x", got[96:])
	}
	if got[19] != 0x40 || got[16] != 0xeb || got[25] != 0x01 || got[27] != 0x34 {
		t.Fatalf("sender layout %x", got)
	}
	rep, err := Reflect(got, ReflectParams{Mode: STAMPAuthenticated, Key: vecKey, RxTime: vecT2, TxTime: vecT3, ErrorEstimate: vecErr, TTL: 61})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 112 || !bytes.Equal(rep[96:], mustHex(t, vecD2HMAC)) {
		t.Fatalf("reflector hmac %x", rep[96:])
	}
	rp, err := DecodeReflector(rep, STAMPAuthenticated, vecKey)
	if err != nil {
		t.Fatal(err)
	}
	if rp.SenderSeq != 7 || rp.ReceiveTimestamp != vecT2 || rp.SenderTimestamp != vecT1 || rp.SenderErrorEstimate != vecErr || rp.SenderTTL != 61 {
		t.Fatalf("reflector fields %+v", rp)
	}
}

func TestAuthenticatedFailures(t *testing.T) {
	good, _ := AppendSender(nil, &SenderPacket{Seq: 7, Timestamp: vecT1, ErrorEstimate: vecErr}, STAMPAuthenticated, vecKey)
	wrongKey := append([]byte(nil), vecKey...)
	wrongKey[0] ^= 1
	tests := []struct {
		name string
		pkt  func() []byte
		key  []byte
		want error
	}{
		{"flipped base bit", func() []byte { b := bytes.Clone(good); b[40] ^= 1; return b }, vecKey, ErrHMAC},
		{"flipped hmac bit", func() []byte { b := bytes.Clone(good); b[100] ^= 0x80; return b }, vecKey, ErrHMAC},
		{"wrong key", func() []byte { return good }, wrongKey, ErrHMAC},
		{"no key", func() []byte { return good }, nil, ErrNoKey},
		{"unauthenticated packet", func() []byte { b, _ := AppendSender(nil, &SenderPacket{Seq: 7}, STAMPUnauthenticated, nil); return b }, vecKey, ErrShort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Reflect(tc.pkt(), ReflectParams{Mode: STAMPAuthenticated, Key: tc.key})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *DecodeError", err)
			}
		})
	}
}

func TestHMACTLVVectorE(t *testing.T) {
	c1 := mustHex(t, vecC1)
	got := AppendHMACTLV(bytes.Clone(c1[44:]), TLVFlagU, vecKey, 8)
	if want := mustHex(t, vecEHMAC); !bytes.Equal(got[48:], want) {
		t.Fatalf("hmac tlv %x, want %x", got[48:], want)
	}
	req := append(bytes.Clone(c1[:44]), got...)
	if len(req) != 112 {
		t.Fatalf("len %d", len(req))
	}
	p := ReflectParams{Key: vecKey, Src: netip.MustParseAddrPort("203.0.113.7:40001"), Dst: netip.MustParseAddrPort("198.51.100.10:862")}
	rep, err := Reflect(req, p)
	if err != nil {
		t.Fatal(err)
	}
	tlvs, _ := DecodeTLVs(rep[44:])
	if len(tlvs) != 2 || tlvs[0].Flags != 0 || tlvs[1].Flags != 0 {
		t.Fatalf("reply tlvs %+v", tlvs)
	}
	if !bytes.Equal(tlvs[1].Value, hmacTLV(vecKey, 8, rep[44:44+48])) {
		t.Fatal("reply hmac tlv does not verify")
	}
	// one bit flipped in the Location TLV → I on all TLVs, Location not filled
	bad := bytes.Clone(req)
	bad[60] ^= 1
	rep, _ = Reflect(bad, p)
	tlvs, _ = DecodeTLVs(rep[44:])
	for _, x := range tlvs {
		if x.Flags&TLVFlagI == 0 {
			t.Fatalf("tlv %d without I flag", x.Type)
		}
	}
	if !bytes.Equal(rep[48:92], bad[48:92]) {
		t.Fatal("location filled despite integrity failure")
	}
	// HMAC TLV before another non-padding TLV → failure
	misplaced := AppendHMACTLV(nil, TLVFlagU, vecKey, 8)
	misplaced = AppendTLV(misplaced, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	req2, _ := AppendSender(nil, &SenderPacket{Seq: 8, TLVs: misplaced}, STAMPUnauthenticated, nil)
	rep, _ = Reflect(req2, p)
	tlvs, _ = DecodeTLVs(rep[44:])
	if tlvs[0].Flags&TLVFlagI == 0 || tlvs[1].Flags&TLVFlagI == 0 {
		t.Fatalf("misplaced hmac tlv not flagged: %+v", tlvs)
	}
}

func TestAuthModeTLVsNeedHMAC(t *testing.T) {
	loc := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	pad := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVExtraPadding, Value: []byte{1, 2, 3, 4}})
	for _, tc := range []struct {
		name  string
		tlvs  []byte
		wantI bool
	}{
		{"location without hmac", loc, true},
		{"padding only", pad, false},
		{"location with hmac", AppendHMACTLV(bytes.Clone(loc), TLVFlagU, vecKey, 3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := AppendSender(nil, &SenderPacket{Seq: 3, TLVs: tc.tlvs}, STAMPAuthenticated, vecKey)
			rep, err := Reflect(req, ReflectParams{Mode: STAMPAuthenticated, Key: vecKey})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep) != len(req) {
				t.Fatalf("reply %d octets, request %d", len(rep), len(req))
			}
			tlvs, _ := DecodeTLVs(rep[112:])
			if got := tlvs[0].Flags&TLVFlagI != 0; got != tc.wantI {
				t.Fatalf("I flag %v, want %v", got, tc.wantI)
			}
		})
	}
}

func TestTLVFlagRules(t *testing.T) {
	unknown := AppendTLV(nil, TLV{Flags: 0, Type: 200, Value: []byte{9, 9, 9}})
	malformedLoc := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: []byte{0, 0}})
	afterLoc := AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVLocation, Value: LocationRequest()})
	truncated := []byte{TLVFlagU, TLVExtraPadding, 0, 50, 1, 2}
	p := ReflectParams{Src: netip.MustParseAddrPort("192.0.2.1:1000"), Dst: netip.MustParseAddrPort("192.0.2.2:862")}
	tests := []struct {
		name  string
		tlvs  []byte
		check func(t *testing.T, req, rep []byte)
	}{
		{"unknown type gets U, bytes unchanged", unknown, func(t *testing.T, req, rep []byte) {
			if rep[44] != TLVFlagU || !bytes.Equal(rep[45:], req[45:]) {
				t.Fatalf("reply tlv %x", rep[44:])
			}
		}},
		{"malformed stops processing", append(bytes.Clone(malformedLoc), afterLoc...), func(t *testing.T, req, rep []byte) {
			if rep[44]&TLVFlagM == 0 {
				t.Fatalf("no M flag: %x", rep[44:])
			}
			if !bytes.Equal(rep[50:], req[50:]) {
				t.Fatal("TLV after the malformed one was processed")
			}
		}},
		{"truncated tlv gets M", truncated, func(t *testing.T, req, rep []byte) {
			if rep[44]&TLVFlagM == 0 || !bytes.Equal(rep[45:], req[45:]) {
				t.Fatalf("reply tlv %x", rep[44:])
			}
		}},
		{"padding echoed with U cleared", AppendTLV(nil, TLV{Flags: TLVFlagU, Type: TLVExtraPadding, Value: []byte("nonce123")}), func(t *testing.T, req, rep []byte) {
			if rep[44] != 0 || !bytes.Equal(rep[45:], req[45:]) {
				t.Fatalf("reply tlv %x", rep[44:])
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := AppendSender(nil, &SenderPacket{Seq: 1, TLVs: tc.tlvs}, STAMPUnauthenticated, nil)
			rep, err := Reflect(req, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep) != len(req) {
				t.Fatalf("reply %d octets, request %d", len(rep), len(req))
			}
			tc.check(t, req, rep)
		})
	}
}

func TestSymmetricSizeAndShort(t *testing.T) {
	for _, tc := range []struct {
		mode STAMPMode
		n    int
		ok   bool
	}{
		{STAMPUnauthenticated, 14, false}, {STAMPUnauthenticated, 43, false},
		{STAMPUnauthenticated, 44, true}, {STAMPUnauthenticated, 45, true},
		{STAMPUnauthenticated, 100, true}, {STAMPUnauthenticated, 1400, true},
		{STAMPAuthenticated, 111, false}, {STAMPAuthenticated, 112, true}, {STAMPAuthenticated, 200, true},
	} {
		req := make([]byte, tc.n)
		if tc.mode == STAMPAuthenticated && tc.n >= 112 {
			copy(req[96:], mac16(vecKey, req[:96]))
		}
		rep, err := Reflect(req, ReflectParams{Mode: tc.mode, Key: vecKey})
		if (err == nil) != tc.ok {
			t.Fatalf("%v %d: err %v", tc.mode, tc.n, err)
		}
		if tc.ok && len(rep) != tc.n {
			t.Fatalf("%v %d: reply %d octets", tc.mode, tc.n, len(rep))
		}
		if tc.ok && tc.n > tc.mode.BaseLen() && !bytes.Equal(rep[tc.mode.BaseLen():], req[tc.mode.BaseLen():]) {
			t.Fatalf("%v %d: zero tail not copied", tc.mode, tc.n)
		}
	}
}

func TestNTPTimestamp(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want NTPTimestamp
	}{
		{"vector T1", time.Date(2025, 6, 1, 12, 0, 0, 250000000, time.UTC), vecT1},
		{"vector T2", time.Date(2025, 6, 1, 12, 0, 0, 262000000, time.UTC), vecT2},
		{"era wrap", time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC), 0},
		{"after wrap", time.Date(2036, 2, 7, 6, 28, 17, 500000000, time.UTC), 1<<32 | 0x80000000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NTPFromTime(tc.t); got != tc.want {
				t.Fatalf("NTPFromTime = %#x, want %#x", uint64(got), uint64(tc.want))
			}
			if got := tc.want.Time(); !got.Equal(tc.t) {
				t.Fatalf("Time() = %v, want %v", got, tc.t)
			}
		})
	}
	// 1 ns resolution round trip with floor rounding
	base := time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)
	for ns := range 2000 {
		in := base.Add(time.Duration(ns*499979) % time.Second)
		if got := NTPFromTime(in).Time(); !got.Equal(in) {
			t.Fatalf("round trip %v → %v", in, got)
		}
	}
}

func TestErrorEstimate(t *testing.T) {
	e := NewErrorEstimate(true, false, 22, 1)
	if e != 0x9601 || !e.Synced() || e.PTP() || e.Scale() != 22 || e.Multiplier() != 1 {
		t.Fatalf("error estimate %#x", uint16(e))
	}
	if got, want := e.Bound(), time.Second/1024; got != want {
		t.Fatalf("bound %v, want %v", got, want)
	}
	if NewErrorEstimate(false, true, 0, 0) != 0x4000 {
		t.Fatal("Z bit")
	}
}
