package vicitest

import (
	"encoding/json"
	"errors"
	"testing"
)

func sample() *Msg {
	return M("up", "yes", "lab", M("uniqueid", "1", "empty", "", "local-vips", []string{"10.50.0.1", ""},
		"tasks", []string{}, "child-sas", M()))
}

func TestJSONRoundTrip(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"k":"up","v":"yes"},{"k":"lab","s":[{"k":"uniqueid","v":"1"},{"k":"empty","v":""},{"k":"local-vips","l":["10.50.0.1",""]},{"k":"tasks","l":[]},{"k":"child-sas","s":[]}]}]`
	if string(b) != want {
		t.Fatalf("json %s\nwant %s", b, want)
	}
	var m Msg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !Equal(&m, sample()) {
		t.Fatalf("round trip %+v", m)
	}
	if err := json.Unmarshal([]byte(`[{"k":"x"}]`), &m); err == nil {
		t.Fatal("item without a value accepted")
	}
}

func TestPacketRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{Type: PktEvent, Name: "ike-updown", Msg: sample()},
		{Type: PktCmdResponse, Msg: M("success", "yes")},
		{Type: PktEventConfirm, Msg: &Msg{}},
	} {
		b, err := EncodePacket(p)
		if err != nil {
			t.Fatal(err)
		}
		if n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]); n != len(b)-4 {
			t.Fatalf("length prefix %d, body %d", n, len(b)-4)
		}
		got, err := DecodePacket(b[4:])
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != p.Type || got.Name != p.Name || !Equal(got.Msg, p.Msg) {
			t.Fatalf("got %+v want %+v", got, p)
		}
	}
	// The govici conversion keeps content and order.
	if g := FromGovici(sample().Govici()); !Equal(g, sample()) {
		t.Fatalf("govici round trip %+v", g)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"section end at top": {elSectionEnd},
		"unterminated":       {elSectionStart, 1, 'a'},
		"truncated key":      {elKeyValue, 5, 'a'},
		"truncated value":    {elKeyValue, 1, 'a', 0, 9, 'x'},
		"bad list element":   {elListStart, 1, 'l', elKeyValue},
		"unknown element":    {9},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	deep := make([]byte, 0, 3*(maxDepth+2))
	for range maxDepth + 2 {
		deep = append(deep, elSectionStart, 1, 's')
	}
	if _, err := Decode(deep); !errors.Is(err, ErrMalformed) {
		t.Fatalf("deep nesting: %v", err)
	}
}

func FuzzDecodePacket(f *testing.F) {
	for _, p := range []Packet{
		{Type: PktEvent, Name: "ike-updown", Msg: sample()},
		{Type: PktCmdRequest, Name: "list-sas", Msg: M("noblock", "yes")},
		{Type: PktCmdResponse, Msg: M("success", "no", "errmsg", "x")},
	} {
		b, _ := EncodePacket(p)
		f.Add(b[4:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePacket(b)
		if err != nil {
			return
		}
		enc, err := EncodePacket(p)
		if err != nil {
			return // e.g. a value the encoder cannot represent is impossible here; names/keys <= 255 by construction
		}
		q, err := DecodePacket(enc[4:])
		if err != nil || q.Type != p.Type || q.Name != p.Name || !Equal(p.Msg, q.Msg) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
