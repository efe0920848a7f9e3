package vici

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// byteConn is a net.Conn reading from a byte slice.
type byteConn struct {
	net.Conn
	r *bytes.Reader
}

func (c byteConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func msg(typ byte, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	return append(append(b, typ), body...)
}

// readMessages reads whole messages the way govici does.
func readMessages(r io.Reader) ([][]byte, error) {
	var out [][]byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return out, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxMessage {
			return out, errors.New("too long")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return out, err
		}
		out = append(out, append(hdr[:], body...))
	}
}

func TestFrameConnHoldsEventsBehindAnswers(t *testing.T) {
	ev1, ev2, ev3 := msg(pktEvent, "a"), msg(pktEvent, "b"), msg(pktEvent, "c")
	ok1, ok2, resp := msg(pktEventConfirm, ""), msg(pktEventConfirm, ""), msg(1, "r")
	for _, tc := range []struct {
		name   string
		expect int
		in     [][]byte
		want   [][]byte
	}{
		{"nothing expected: as sent", 0, [][]byte{ev1, resp, ev2}, [][]byte{ev1, resp, ev2}},
		{"events wait for the last answer", 2, [][]byte{ev1, ok1, ev2, ok2, ev3}, [][]byte{ok1, ok2, ev1, ev2, ev3}},
		{"a refused registration releases them", 2, [][]byte{ev1, msg(pktEventUnknown, ""), ev2}, [][]byte{msg(pktEventUnknown, ""), ev1, ev2}},
		{"other answers pass", 1, [][]byte{ev1, resp, ok1}, [][]byte{resp, ok1, ev1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFrameConn(byteConn{r: bytes.NewReader(bytes.Join(tc.in, nil))})
			fc.expect(tc.expect)
			got, err := readMessages(fc)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err %v", err)
			}
			if !bytes.Equal(bytes.Join(got, nil), bytes.Join(tc.want, nil)) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFrameConnLimits(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, MaxMessage+1)
	fc := newFrameConn(byteConn{r: bytes.NewReader(append(msg(1, "ok"), big...))})
	got, err := readMessages(fc)
	if len(got) != 1 || err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("got %d messages, err %v; want 1 and the limit", len(got), err)
	}
	// a flood of events before an answer ends the session
	var flood []byte
	for len(flood) <= maxHeld {
		flood = append(flood, msg(pktEvent, strings.Repeat("x", 1000))...)
	}
	fc = newFrameConn(byteConn{r: bytes.NewReader(flood)})
	fc.expect(1)
	if got, err := readMessages(fc); len(got) != 0 || err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("got %d messages, err %v; want none and an error", len(got), err)
	}
}

// FuzzFrameConn: any byte stream and any number of expected answers: no
// panic, never more octets out than in, and the non-event messages come out
// in their order.
func FuzzFrameConn(f *testing.F) {
	f.Add(bytes.Join([][]byte{msg(pktEvent, "a"), msg(pktEventConfirm, ""), msg(1, "r")}, nil), uint8(1))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<31), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, expect uint8) {
		fc := newFrameConn(byteConn{r: bytes.NewReader(in)})
		fc.expect(int(expect % 4))
		var out bytes.Buffer
		buf := make([]byte, 7) // small reads split messages
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			n, err := fc.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if out.Len() > len(in) {
			t.Fatalf("%d octets out of %d in", out.Len(), len(in))
		}
		var nonEvIn, nonEvOut [][]byte
		inMsgs, _ := readMessages(bytes.NewReader(in))
		outMsgs, _ := readMessages(&out)
		for _, m := range inMsgs {
			if len(m) > 4 && m[4] != pktEvent {
				nonEvIn = append(nonEvIn, m)
			}
		}
		for _, m := range outMsgs {
			if len(m) > 4 && m[4] != pktEvent {
				nonEvOut = append(nonEvOut, m)
			}
		}
		for i, m := range nonEvOut {
			if i >= len(nonEvIn) || !bytes.Equal(m, nonEvIn[i]) {
				t.Fatalf("non-event message %d out of order", i)
			}
		}
	})
}
