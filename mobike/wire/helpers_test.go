package wire

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustMarshal(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	return netip.MustParseAddr(s)
}

var (
	testSPIi = SPI{1, 2, 3, 4, 5, 6, 7, 8}
	testSPIr = SPI{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}
)
