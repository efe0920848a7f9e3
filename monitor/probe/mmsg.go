package probe

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgBatch is a reusable set of message headers for sendmmsg/recvmmsg on a
// raw file descriptor. The probe sockets are not registered with Go's
// netpoller (a registered socket wakes the runtime's poller thread for every
// packet that arrives, whether a goroutine waits for it or not): the
// scheduler reads them without blocking, and the batch calls go straight to
// the system calls. Every buffer a header points to is heap memory owned by
// the batch and kept alive across the call.
type mmsgBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	bufs  [][]byte
	oobs  [][]byte
	dsts  []netip.AddrPort // sending: each message's destination
	n     int              // messages in use (sending)
}

func newMmsgBatch(n, bufLen, oobLen int) *mmsgBatch {
	b := &mmsgBatch{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n), bufs: make([][]byte, n), oobs: make([][]byte, n)}
	for i := range n {
		b.bufs[i] = make([]byte, bufLen)
		if oobLen > 0 {
			b.oobs[i] = make([]byte, oobLen)
		}
	}
	return b
}

// prepareRecv points every header at its full buffers.
func (b *mmsgBatch) prepareRecv() {
	for i := range b.hdrs {
		h := &b.hdrs[i]
		*h = unix.Mmsghdr{}
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h.Hdr.Iov = &b.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		if len(b.oobs[i]) > 0 {
			h.Hdr.Control = &b.oobs[i][0]
			h.Hdr.SetControllen(len(b.oobs[i]))
		}
	}
}

// recv reads up to len(b.hdrs) datagrams. MSG_WAITFORONE blocks until one
// arrives and takes what else is queued; MSG_DONTWAIT never blocks. (With
// neither, recvmmsg would block until all len(b.hdrs) arrived.)
func (b *mmsgBatch) recv(fd, flags int) (int, error) {
	b.prepareRecv()
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), uintptr(flags), 0, 0)
	runtime.KeepAlive(b)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// payload, control data and source address of received message i.
func (b *mmsgBatch) payload(i int) []byte { return b.bufs[i][:b.hdrs[i].Len] }

func (b *mmsgBatch) control(i int) []byte {
	n := int(b.hdrs[i].Hdr.Controllen)
	if b.hdrs[i].Hdr.Control == nil || n > len(b.oobs[i]) {
		return nil
	}
	return b.oobs[i][:n]
}

func (b *mmsgBatch) source(i int) netip.AddrPort {
	return sockaddrAddrPort(&b.names[i])
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}

// putSockaddr writes to into sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort) uint32 {
	*sa = unix.RawSockaddrInet6{}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	binary.BigEndian.PutUint16(p[:], to.Port())
	if to.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = to.Addr().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Addr = to.Addr().As16()
	return unix.SizeofSockaddrInet6
}

// slot returns the buffer of the next message to send (grown as needed).
func (b *mmsgBatch) slot() []byte {
	if b.n == len(b.hdrs) {
		b.hdrs = append(b.hdrs, unix.Mmsghdr{})
		b.iovs = append(b.iovs, unix.Iovec{})
		b.names = append(b.names, unix.RawSockaddrInet6{})
		b.bufs = append(b.bufs, make([]byte, 0, 256))
		b.oobs = append(b.oobs, nil)
	}
	if len(b.dsts) < len(b.hdrs) {
		b.dsts = append(b.dsts, make([]netip.AddrPort, len(b.hdrs)-len(b.dsts))...)
	}
	return b.bufs[b.n][:0]
}

// push queues the packet built in slot()'s buffer, to to, with control data
// oob (kept by reference: it must not change).
func (b *mmsgBatch) push(pkt []byte, to netip.AddrPort, oob []byte) {
	i := b.n
	b.bufs[i] = pkt
	b.oobs[i] = oob
	b.dsts[i] = to
	b.n++
}

// send transmits the queued packets with one sendmmsg per call, without
// blocking; a packet the kernel refuses is skipped. It returns the first
// error and empties the queue.
func (b *mmsgBatch) send(fd int) error {
	var first error
	for i := range b.n {
		h := &b.hdrs[i]
		*h = unix.Mmsghdr{}
		pkt := b.bufs[i]
		if len(pkt) > 0 {
			b.iovs[i].Base = &pkt[0]
		}
		b.iovs[i].SetLen(len(pkt))
		h.Hdr.Iov = &b.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Hdr.Namelen = putSockaddr(&b.names[i], b.dsts[i])
		if len(b.oobs[i]) > 0 {
			h.Hdr.Control = &b.oobs[i][0]
			h.Hdr.SetControllen(len(b.oobs[i]))
		}
	}
	for off := 0; off < b.n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[off])), uintptr(b.n-off), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e != 0:
			// sendmmsg fails only on the first message it could not
			// send: skip that one, send the rest
			if first == nil {
				first = e
			}
			off++
		case r == 0:
			off = b.n
		default:
			off += int(r)
		}
	}
	runtime.KeepAlive(b)
	b.reset()
	return first
}

// reset empties the send queue.
func (b *mmsgBatch) reset() {
	for i := range b.n {
		b.bufs[i] = b.bufs[i][:0]
		b.oobs[i] = nil
	}
	b.n = 0
}
