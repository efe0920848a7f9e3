package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestNonESPMarker(t *testing.T) {
	msg := mustMarshal(t, informational())
	framed := AddNonESPMarker(msg)
	if !bytes.Equal(framed[:4], []byte{0, 0, 0, 0}) || !bytes.Equal(framed[4:], msg) {
		t.Fatalf("framed %x", framed[:8])
	}
	got, err := StripNonESPMarker(framed)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("strip = %v", err)
	}
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"keepalive", []byte{0xff}, ErrKeepalive},
		{"esp", []byte{0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 1}, ErrNotESPMarker},
		{"short", []byte{0, 0}, ErrTruncated},
		{"empty", nil, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := StripNonESPMarker(tc.in); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}
