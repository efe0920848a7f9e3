package probe

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

func TestNATVerdicts(t *testing.T) {
	L := netip.MustParseAddrPort("192.168.1.20:50000")
	R := netip.MustParseAddrPort("198.51.100.10:862")
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		loc  Location
		want mobike.NATVerdict
	}{
		{"no nat", Location{Src: L.Addr(), SrcPort: L.Port(), Dst: R.Addr(), DstPort: R.Port()}, mobike.NATNone},
		{"snat", Location{Src: ip("203.0.113.7"), SrcPort: L.Port(), Dst: R.Addr(), DstPort: R.Port()}, mobike.NATPresent},
		{"napt", Location{Src: ip("203.0.113.7"), SrcPort: 40001, Dst: R.Addr(), DstPort: R.Port()}, mobike.NATPresent},
		{"port only", Location{Src: L.Addr(), SrcPort: 40001, Dst: R.Addr(), DstPort: R.Port()}, mobike.NATPresent},
		{"dnat", Location{Src: L.Addr(), SrcPort: L.Port(), Dst: ip("10.0.0.5"), DstPort: R.Port()}, mobike.NATPresent},
		{"unreported", Location{}, mobike.NATUnknown},
		{"address without port", Location{Src: ip("203.0.113.7")}, mobike.NATUnknown},
		{"only destination reported", Location{Dst: R.Addr(), DstPort: R.Port()}, mobike.NATNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := compareLocation(tc.loc, L, R); got != tc.want {
				t.Fatalf("verdict %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSenderReflectorRoundTrip runs the Session-Sender's encoder through the
// reflector and back through the sender's reply parser, in both modes.
func TestSenderReflectorRoundTrip(t *testing.T) {
	L := netip.MustParseAddrPort("10.2.0.2:40000")
	R := netip.MustParseAddrPort("10.3.0.2:862")
	now := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		key     []byte
		seenSrc netip.AddrPort
		seq     uint32
		wantLen int
		wantNAT mobike.NATVerdict
	}{
		{"unauth with location, nat", nil, netip.MustParseAddrPort("10.3.0.1:40000"), 0, 44 + 48 + 12, mobike.NATPresent},
		{"unauth with location, no nat", nil, L, 10, 44 + 48 + 12, mobike.NATNone},
		{"unauth without location", nil, L, 3, 44 + 12, mobike.NATUnknown},
		{"auth with location, nat", vecKey, netip.MustParseAddrPort("10.3.0.1:1234"), 0, 112 + 48 + 20, mobike.NATPresent},
		{"auth without location", vecKey, L, 7, 112, mobike.NATUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSTAMPEndpoint(&sharedSock{local: L}, R, tc.key, 10, RealClock())
			nonce := make([]byte, e.NonceLen())
			nonce[0], nonce[len(nonce)-1] = 0xa5, 0x5a
			req, err := e.encode(nil, tc.seq, nonce, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(req) != tc.wantLen {
				t.Fatalf("request %d octets, want %d", len(req), tc.wantLen)
			}
			rep, err := Reflect(req, ReflectParams{Mode: e.mode, Key: tc.key, Src: tc.seenSrc, Dst: R,
				RxTime: NTPFromTime(now.Add(time.Millisecond)), TxTime: NTPFromTime(now.Add(1100 * time.Microsecond))})
			if err != nil {
				t.Fatal(err)
			}
			r, ok := e.parseReply(rep)
			if !ok || r.Seq != tc.seq || !bytes.Equal(r.Nonce, nonce) || r.NAT != tc.wantNAT {
				t.Fatalf("reply %+v ok=%v, want seq %d nonce %x nat %v", r, ok, tc.seq, nonce, tc.wantNAT)
			}
			if d := r.Remote - 100*time.Microsecond; d < -time.Microsecond || d > time.Microsecond {
				t.Fatalf("remote time %v, want 100µs", r.Remote)
			}
			// a reply with another SSID is not ours
			e2 := newSTAMPEndpoint(&sharedSock{local: L}, R, tc.key, 10, RealClock())
			e2.ssid = e.ssid + 1
			if _, ok := e2.parseReply(rep); ok {
				t.Fatal("reply accepted with a foreign SSID")
			}
			if tc.key != nil {
				bad := bytes.Clone(rep)
				bad[50] ^= 1
				if _, ok := e.parseReply(bad); ok {
					t.Fatal("reply with a bad HMAC accepted")
				}
			}
		})
	}
}
