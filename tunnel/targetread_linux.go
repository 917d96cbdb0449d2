package tunnel

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/udpgro"
)

// targetReader reads a target socket so that a tunnel holds a buffer only
// while data is queued: it tells whether data is queued and waits for some
// without a buffer (MSG_PEEK), and, on a UDP socket, reads without blocking
// (readGRO) until the queue is empty. An idle tunnel so holds no buffer at
// all. The cost is two MSG_PEEK calls per burst of UDP packets, and one per
// short read of a TCP target (two when it was the last of a burst).
type targetReader struct {
	rc syscall.RawConn
	// peeked is where a peek looks: one byte, as a zero-length peek on a
	// TCP socket returns at once, data or not.
	peeked [1]byte
	// The callbacks for rc.Read and their results, bound once: a closure
	// per call would allocate per packet.
	peekFn, readyFn, groFn func(fd uintptr) bool
	gro                    *groMsg // readGRO's header, set only during the call
	n                      int
	err                    error
	isReady                bool
}

// newTargetReader returns a targetReader for c, or false where c is not a
// UDP or TCP socket (the caller then reads c, blocking, with a buffer in
// hand).
func newTargetReader(c net.Conn) (*targetReader, bool) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.UDPConn:
		sc = c
	case *net.TCPConn:
		sc = c
	default:
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	t := &targetReader{rc: rc}
	t.peekFn, t.readyFn, t.groFn = t.peek, t.peekOnce, t.readGROOnce
	return t, true
}

// wait blocks until data (a UDP packet, TCP bytes or end of stream) or an
// error is queued, or the socket closes.
func (t *targetReader) wait() error {
	if err := t.rc.Read(t.peekFn); err != nil {
		return err
	}
	return t.err
}

// ready reports, without blocking, whether data (or an error) is queued.
func (t *targetReader) ready() bool {
	err := t.rc.Read(t.readyFn)
	return err != nil || t.isReady
}

func (t *targetReader) peekOnce(fd uintptr) bool {
	t.isReady = t.peek(fd)
	return true
}

// peek looks for a queued packet without taking it. Go's poller is
// edge-triggered and forgets a readiness it saw before rc.Read began, so
// rc.Read must look first and park only on EAGAIN.
func (t *targetReader) peek(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.peeked[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	t.err = nil
	if errno != 0 {
		t.err = errno
	}
	return errno != unix.EAGAIN
}

// groMsg is recvmsg's header and control buffer for a GRO read, pooled
// with the read's buffer rather than held by every tunnel.
type groMsg struct {
	hdr unix.Msghdr
	iov unix.Iovec
	oob [udpgro.OOBLen]byte
}

// clear drops the header's pointers into the buffer.
func (m *groMsg) clear() { *m = groMsg{} }

// enableGRO asks the kernel to hand over a run of equal-size packets from
// the target as one buffer (UDP_GRO): what a QUIC origin sends in one GSO
// call then takes one system call and one pass through the stack. A kernel
// without UDP_GRO (before Linux 5.0) refuses it, and readGRO then reads one
// packet per call.
func (t *targetReader) enableGRO() {
	_ = t.rc.Control(func(fd uintptr) {
		_ = udpgro.Enable(fd)
	})
}

// readGRO reads the next queued packet, or run of coalesced packets, into b
// without blocking. It returns the bytes read and the size of each packet in
// them (the last may be shorter), which is n when the kernel did not
// coalesce; syscall.EAGAIN says the queue is empty.
func (t *targetReader) readGRO(m *groMsg, b []byte) (n, seg int, err error) {
	m.iov.Base = &b[0]
	m.iov.SetLen(len(b))
	m.hdr.Iov = &m.iov
	m.hdr.SetIovlen(1)
	m.hdr.Control = &m.oob[0]
	m.hdr.SetControllen(len(m.oob))
	t.gro = m
	err = t.rc.Read(t.groFn)
	t.gro = nil
	if err == nil {
		err = t.err
	}
	if err != nil {
		return 0, 0, err
	}
	seg = udpgro.SegmentSize(m.oob[:m.hdr.Controllen])
	if seg <= 0 {
		seg = t.n
	}
	return t.n, seg, nil
}

// readGROOnce is readGRO's recvmsg, with no address: the socket is
// connected, and unix.Recvmsg would allocate one per packet.
func (t *targetReader) readGROOnce(fd uintptr) bool {
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&t.gro.hdr)), unix.MSG_DONTWAIT)
	t.n, t.err = int(n), nil
	if errno != 0 {
		t.n, t.err = 0, errno
	}
	return true
}
