package wire

import (
	"encoding/hex"
	"net/netip"
	"testing"
)

// Vectors from mobike-digest.md §3.4. The first is pinned by a third-party
// implementation's test suite; the rest were computed independently in Go
// and Python for the digest.
func TestNATDetectionHash(t *testing.T) {
	tests := []struct {
		name string
		spiR SPI
		ap   string
		want string
	}{
		{"known vector 192.0.2.1:500", testSPIr, "192.0.2.1:500", "d798d986143f878f70765e0e869c80bbc375f701"},
		{"port 4500", testSPIr, "192.0.2.1:4500", "5184f43875ff7d9e3dfdc92bd1dee1a08204de3e"},
		{"ipv6", testSPIr, "[2001:db8::1]:4500", "1ee24423bf8f59515e0265c6d0f08be3d038f7e5"},
		{"IKE_SA_INIT request zero SPIr", SPI{}, "192.0.2.1:500", "644b4575455bd6fcc1efe2be8162a9218e448e5f"},
		{"other address", testSPIr, "198.51.100.7:4500", "09aefdcb65602faed1067c64e3e64e39122f5e3f"},
		// A v4-mapped address must be hashed as 4 octets, giving the first
		// vector, never the 16-octet form (a55705b3...).
		{"v4-mapped hashed as ipv4", testSPIr, "[::ffff:192.0.2.1]:500", "d798d986143f878f70765e0e869c80bbc375f701"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NATDetectionHash(testSPIi, tc.spiR, netip.MustParseAddrPort(tc.ap))
			if got := hex.EncodeToString(h[:]); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNATDetectionHashSensitivity(t *testing.T) {
	ap := netip.MustParseAddrPort("192.0.2.1:500")
	base := NATDetectionHash(testSPIi, testSPIr, ap)
	if NATDetectionHash(testSPIr, testSPIi, ap) == base {
		t.Error("hash does not depend on SPI order")
	}
	if NATDetectionHash(testSPIi, testSPIr, netip.MustParseAddrPort("192.0.2.1:501")) == base {
		t.Error("hash does not depend on port")
	}
	if NATDetectionHash(testSPIi, testSPIr, netip.MustParseAddrPort("192.0.2.2:500")) == base {
		t.Error("hash does not depend on address")
	}
}
