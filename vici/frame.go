package vici

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
)

// VICI framing limits.
const (
	// MaxMessage caps one VICI message from charon. charon never sends more:
	// VICI_MESSAGE_SIZE_MAX (512 KiB, vici_socket.h) bounds every message,
	// and charon's own client library (libvici) drops a connection whose
	// header claims more. govici v0.8.1 allocates whatever a header claims
	// (up to 4 GiB), so the cap is enforced here, before govici reads.
	MaxMessage = 512 << 10
	// maxHeld bounds the events held back while a registration is answered
	// (see frameConn); charon sends a few at most, a flood ends the session.
	maxHeld = 4 << 20
)

// VICI packet types (the first octet of a message).
const (
	pktEventConfirm = 5
	pktEventUnknown = 6
	pktEvent        = 7
)

// frameConn is the connection govici reads charon through. It reads whole
// VICI messages itself and
//   - refuses a message longer than MaxMessage (the read fails, govici ends
//     the session, nothing large is allocated);
//   - while a Subscribe is in progress, holds back event messages until
//     every registration of that Subscribe is answered. govici v0.8.1 keeps
//     its event lock for the whole of a Subscribe, and its reader needs that
//     lock to deliver an event: an event arriving before the last
//     registration answer (charon sends the confirmation after it has added
//     the client, so an event raised in between comes first) deadlocks the
//     session for good, and Close frees nothing. Held back, the events follow
//     the answer in their own order, and the reader never blocks on the lock
//     while a registration waits.
//
// Only govici's reader goroutine calls Read; expect is called before the
// Subscribe it announces.
type frameConn struct {
	net.Conn
	max int

	mu      sync.Mutex // guards pending
	pending int        // registration answers expected before held events may pass

	// reader goroutine only
	out       []byte   // bytes ready for the reader
	held      [][]byte // event messages held back, with their headers
	heldBytes int
}

func newFrameConn(c net.Conn) *frameConn { return &frameConn{Conn: c, max: MaxMessage} }

// expect announces a Subscribe of n events: events are held back until n
// registration answers have been read (or one failed: govici stops there).
func (f *frameConn) expect(n int) {
	f.mu.Lock()
	f.pending += n
	f.mu.Unlock()
}

// answered counts a registration answer and reports whether events may pass.
func (f *frameConn) answered(ok bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok && f.pending > 0 {
		f.pending--
	} else {
		f.pending = 0 // a refused registration ends the Subscribe
	}
	return f.pending == 0
}

func (f *frameConn) holding() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending > 0
}

func (f *frameConn) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if len(f.held) > 0 && !f.holding() {
			for _, m := range f.held {
				f.out = append(f.out, m...)
			}
			f.held, f.heldBytes = nil, 0
			break
		}
		m, err := f.readMessage()
		if err != nil {
			return 0, err
		}
		switch typ := m[4]; {
		case typ == pktEvent && f.holding():
			f.held = append(f.held, m)
			if f.heldBytes += len(m); f.heldBytes > maxHeld {
				return 0, fmt.Errorf("vici: %d octets of events before a registration answer", f.heldBytes)
			}
			continue
		case typ == pktEventConfirm || typ == pktEventUnknown:
			if f.answered(typ == pktEventConfirm) {
				for _, h := range f.held { // the answer first, then what was held
					m = append(m, h...)
				}
				f.held, f.heldBytes = nil, 0
			}
		}
		f.out = m
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// readMessage reads one message, header included.
func (f *frameConn) readMessage() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(f.Conn, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(f.max) {
		return nil, fmt.Errorf("vici: charon sent a %d-octet message (limit %d)", n, f.max)
	}
	m := make([]byte, 4+int(n))
	copy(m, hdr[:])
	if _, err := io.ReadFull(f.Conn, m[4:]); err != nil {
		return nil, err
	}
	return m, nil
}
