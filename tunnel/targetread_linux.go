package tunnel

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// targetReader reads a target socket so that a tunnel holds a buffer only
// while data is queued: it tells whether data is queued and waits for some
// without a buffer (MSG_PEEK), and, on a UDP socket, reads without blocking
// until the queue is empty. An idle tunnel so holds no buffer at all. The
// cost is two MSG_PEEK calls per burst of UDP packets, and one per short
// read of a TCP target (two when it was the last of a burst).
type targetReader struct {
	rc syscall.RawConn
	// peeked is where a peek looks: one byte, as a zero-length peek on a
	// TCP socket returns at once, data or not.
	peeked [1]byte
	// The callbacks for rc.Read and their results, bound once: a closure
	// per call would allocate per packet.
	peekFn, readFn, readyFn func(fd uintptr) bool
	buf                     []byte
	n                       int
	err                     error
	isReady                 bool
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
	t.peekFn, t.readFn, t.readyFn = t.peek, t.readOnce, t.peekOnce
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

// read reads one queued packet into b without blocking; syscall.EAGAIN
// says the queue is empty.
func (t *targetReader) read(b []byte) (int, error) {
	t.buf = b
	err := t.rc.Read(t.readFn)
	t.buf = nil
	if err != nil {
		return 0, err
	}
	return t.n, t.err
}

func (t *targetReader) readOnce(fd uintptr) bool {
	t.n, t.err = unix.Read(int(fd), t.buf)
	return true
}
