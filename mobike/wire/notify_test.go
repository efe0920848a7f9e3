package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func mustNotify(t testing.TB) func(*Notify, error) *Notify {
	return func(n *Notify, err error) *Notify {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// TestNotifyBytes checks the byte examples of mobike-digest.md §1.3.
func TestNotifyBytes(t *testing.T) {
	must := mustNotify(t)
	tests := []struct {
		name string
		ps   []Payload
		want string
	}{
		{"MOBIKE_SUPPORTED", []Payload{NotifyStatus(NotifyMOBIKESupported)}, "00 00 0008 00 00 400c"},
		{"UPDATE_SA_ADDRESSES followed by N", []Payload{NotifyStatus(NotifyUpdateSAAddresses), NotifyStatus(NotifyNoAdditionalAddresses)},
			"29 00 0008 00 00 4010 00 00 0008 00 00 400f"},
		{"NO_ADDITIONAL_ADDRESSES", []Payload{NotifyStatus(NotifyNoAdditionalAddresses)}, "00 00 0008 00 00 400f"},
		{"ADDITIONAL_IP4_ADDRESS", []Payload{must(AdditionalAddress(mustAddr(t, "192.0.2.1")))}, "00 00 000c 00 00 400d c0000201"},
		{"ADDITIONAL_IP4_ADDRESS from mapped", []Payload{must(AdditionalAddress(mustAddr(t, "::ffff:192.0.2.1")))}, "00 00 000c 00 00 400d c0000201"},
		{"ADDITIONAL_IP6_ADDRESS", []Payload{must(AdditionalAddress(mustAddr(t, "2001:db8::1")))}, "00 00 0018 00 00 400e 20010db8000000000000000000000001"},
		{"UNACCEPTABLE_ADDRESSES", []Payload{NotifyStatus(NotifyUnacceptableAddresses)}, "00 00 0008 00 00 0028"},
		{"UNEXPECTED_NAT_DETECTED", []Payload{NotifyStatus(NotifyUnexpectedNATDetected)}, "00 00 0008 00 00 0029"},
		{"COOKIE2", []Payload{must(Cookie2(mustHex(t, "a0a1a2a3a4a5a6a7")))}, "00 00 0010 00 00 4011 a0a1a2a3a4a5a6a7"},
		{"NO_NATS_ALLOWED v4", []Payload{must(NoNATsAllowed(netip.MustParseAddrPort("198.51.100.7:4500"), netip.MustParseAddrPort("192.0.2.1:4500")))},
			"00 00 0014 00 00 4012 c6336407 c0000201 1194 1194"},
		// mobike-digest.md §3.5: inner payloads of an UPDATE_SA_ADDRESSES request.
		{"UPDATE_SA_ADDRESSES request inner chain", []Payload{
			NotifyStatus(NotifyUpdateSAAddresses),
			NATDetectionSource(testSPIi, testSPIr, netip.MustParseAddrPort("198.51.100.7:4500")),
			NATDetectionDestination(testSPIi, testSPIr, netip.MustParseAddrPort("192.0.2.1:4500")),
			must(Cookie2(mustHex(t, "a0a1a2a3a4a5a6a7"))),
		}, `29 00 0008 0000 4010
			29 00 001c 0000 4004 09aefdcb65602faed1067c64e3e64e39122f5e3f
			29 00 001c 0000 4005 5184f43875ff7d9e3dfdc92bd1dee1a08204de3e
			00 00 0010 0000 4011 a0a1a2a3a4a5a6a7`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first, b, err := MarshalPayloads(tc.ps)
			if err != nil {
				t.Fatal(err)
			}
			if first != PayloadNotify {
				t.Errorf("first = %v, want N", first)
			}
			want := mustHex(t, tc.want)
			if !bytes.Equal(b, want) {
				t.Fatalf("got  %x\nwant %x", b, want)
			}
			ps, err := ParsePayloads(first, b)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if err := p.(*Notify).Validate(); err != nil {
					t.Errorf("decoded notify invalid: %v", err)
				}
			}
			_, b2, err := MarshalPayloads(ps)
			if err != nil || !bytes.Equal(b2, want) {
				t.Errorf("re-encode = %x, %v", b2, err)
			}
		})
	}
}

func TestNotifyAccessors(t *testing.T) {
	a4, _ := AdditionalAddress(mustAddr(t, "10.1.0.2"))
	if got, err := a4.Address(); err != nil || got != mustAddr(t, "10.1.0.2") {
		t.Errorf("v4 Address = %v, %v", got, err)
	}
	a6, _ := AdditionalAddress(mustAddr(t, "fd00:1::2"))
	if got, err := a6.Address(); err != nil || got != mustAddr(t, "fd00:1::2") {
		t.Errorf("v6 Address = %v, %v", got, err)
	}
	if _, err := AdditionalAddress(netip.Addr{}); !errors.Is(err, ErrBadNotifyData) {
		t.Errorf("invalid addr: %v", err)
	}
	src, dst := netip.MustParseAddrPort("[2001:db8::7]:4500"), netip.MustParseAddrPort("[2001:db8::1]:500")
	nn, err := NoNATsAllowed(src, dst)
	if err != nil || len(nn.Data) != 36 {
		t.Fatalf("NoNATsAllowed v6 = %v, %v", nn, err)
	}
	if s, d, err := nn.NoNATsAllowedAddrs(); err != nil || s != src || d != dst {
		t.Errorf("NoNATsAllowedAddrs = %v %v %v", s, d, err)
	}
	if _, err := NoNATsAllowed(netip.MustParseAddrPort("192.0.2.1:1"), dst); !errors.Is(err, ErrBadNotifyData) {
		t.Errorf("mixed family: %v", err)
	}
	nd := NATDetectionDestination(testSPIi, testSPIr, netip.MustParseAddrPort("192.0.2.1:4500"))
	if h, err := nd.NATHash(); err != nil || h != NATDetectionHash(testSPIi, testSPIr, netip.MustParseAddrPort("192.0.2.1:4500")) {
		t.Errorf("NATHash = %x %v", h, err)
	}
	ike := &Notify{Type: NotifyInvalidKEPayload, Data: []byte{0, 19}}
	if g, err := ike.InvalidKEGroup(); err != nil || g != DHECP256 {
		t.Errorf("InvalidKEGroup = %v %v", g, err)
	}
	c := bytes.Repeat([]byte{7}, 16)
	c2, _ := Cookie2(c)
	if got, err := c2.Cookie2(); err != nil || !bytes.Equal(got, c) {
		t.Errorf("Cookie2 = %x %v", got, err)
	}
	for _, n := range []int{0, 7, 65} {
		if _, err := Cookie2(make([]byte, n)); !errors.Is(err, ErrBadNotifyData) {
			t.Errorf("Cookie2(%d octets) err = %v", n, err)
		}
	}
	for _, n := range []int{8, 64} {
		if _, err := Cookie2(make([]byte, n)); err != nil {
			t.Errorf("Cookie2(%d octets) err = %v", n, err)
		}
	}
}

func TestNotifyValidate(t *testing.T) {
	tests := []struct {
		name string
		n    Notify
		ok   bool
	}{
		{"mobike supported with junk is fine", Notify{Type: NotifyMOBIKESupported, Data: []byte{1}}, true},
		{"update with data", Notify{Type: NotifyUpdateSAAddresses, Data: []byte{1}}, false},
		{"update with spi", Notify{Type: NotifyUpdateSAAddresses, SPI: []byte{1, 2, 3, 4}}, false},
		{"no additional ok", Notify{Type: NotifyNoAdditionalAddresses}, true},
		{"unacceptable with data", Notify{Type: NotifyUnacceptableAddresses, Data: []byte{0}}, false},
		{"unexpected nat ok", Notify{Type: NotifyUnexpectedNATDetected}, true},
		{"ip4 with 16 octets", Notify{Type: NotifyAdditionalIP4Address, Data: make([]byte, 16)}, false},
		{"ip6 with 4 octets", Notify{Type: NotifyAdditionalIP6Address, Data: make([]byte, 4)}, false},
		{"ip6 v4-mapped", Notify{Type: NotifyAdditionalIP6Address, Data: netip.MustParseAddr("::ffff:1.2.3.4").AsSlice()}, false},
		{"ip6 ok", Notify{Type: NotifyAdditionalIP6Address, Data: make([]byte, 16)}, true},
		{"cookie2 7", Notify{Type: NotifyCookie2, Data: make([]byte, 7)}, false},
		{"cookie2 64", Notify{Type: NotifyCookie2, Data: make([]byte, 64)}, true},
		{"cookie2 65", Notify{Type: NotifyCookie2, Data: make([]byte, 65)}, false},
		{"no nats 12", Notify{Type: NotifyNoNATsAllowed, Data: make([]byte, 12)}, true},
		{"no nats 13", Notify{Type: NotifyNoNATsAllowed, Data: make([]byte, 13)}, false},
		{"natd 19", Notify{Type: NotifyNATDetectionSourceIP, Data: make([]byte, 19)}, false},
		{"natd 20", Notify{Type: NotifyNATDetectionDestinationIP, Data: make([]byte, 20)}, true},
		{"invalid ke 3", Notify{Type: NotifyInvalidKEPayload, Data: make([]byte, 3)}, false},
		{"cookie empty", Notify{Type: NotifyCookie}, false},
		{"cookie 65", Notify{Type: NotifyCookie, Data: make([]byte, 65)}, false},
		{"cookie 32", Notify{Type: NotifyCookie, Data: make([]byte, 32)}, true},
		{"unknown type anything", Notify{Type: 30000, Data: []byte{1, 2, 3}}, true},
		{"rekey with spi", Notify{Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4}, Type: NotifyRekeySA}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.n.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadNotifyData) {
				t.Errorf("error %v does not wrap ErrBadNotifyData", err)
			}
		})
	}
	// Accessors refuse the wrong notify type.
	wrong := &Notify{Type: NotifyCookie, Data: make([]byte, 20)}
	if _, err := wrong.NATHash(); err == nil {
		t.Error("NATHash on COOKIE succeeded")
	}
	if _, err := wrong.Address(); err == nil {
		t.Error("Address on COOKIE succeeded")
	}
	if _, _, err := wrong.NoNATsAllowedAddrs(); err == nil {
		t.Error("NoNATsAllowedAddrs on COOKIE succeeded")
	}
	if _, err := wrong.Cookie2(); err == nil {
		t.Error("Cookie2 on COOKIE succeeded")
	}
}

func TestNotifyStringAndTypes(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{NotifyStatus(NotifyUpdateSAAddresses).String(), "N(UPDATE_SA_ADDRESSES)"},
		{(&Notify{Type: NotifyCookie2, Data: []byte{0xab}}).String(), "N(COOKIE2 ab)"},
		{NotifyType(12345).String(), "notify(12345)"},
		{NotifyNoNATsAllowed.String(), "NO_NATS_ALLOWED"},
		{NotifyAdditionalIP4Address.String(), "ADDITIONAL_IP4_ADDRESS"},
		{NotifyAdditionalIP6Address.String(), "ADDITIONAL_IP6_ADDRESS"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if !NotifyUnacceptableAddresses.IsError() || NotifyCookie2.IsError() || !NotifyType(16383).IsError() || NotifyType(16384).IsError() {
		t.Error("IsError boundary wrong")
	}
}
