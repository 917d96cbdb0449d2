package tunnel

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// targetReader reads a connected UDP target socket so that a tunnel holds a
// datagram buffer only while packets are queued: it waits for the first one
// without a buffer, then reads without blocking until the queue is empty.
// An idle UDP tunnel so holds no buffer at all. The cost is two MSG_PEEK
// calls per burst of packets.
type targetReader struct {
	rc syscall.RawConn
	// The callbacks for rc.Read and their results, bound once: a closure
	// per call would allocate per packet.
	peekFn, readFn func(fd uintptr) bool
	buf            []byte
	n              int
	err            error
}

// newTargetReader returns a targetReader for c, or false where c is not a
// UDP socket (the caller then reads c, blocking, with a buffer in hand).
func newTargetReader(c net.Conn) (*targetReader, bool) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil, false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, false
	}
	t := &targetReader{rc: rc}
	t.peekFn, t.readFn = t.peek, t.readOnce
	return t, true
}

// wait blocks until a packet (or an ICMP error) is queued, or the socket
// closes.
func (t *targetReader) wait() error {
	if err := t.rc.Read(t.peekFn); err != nil {
		return err
	}
	return t.err
}

// peek looks for a queued packet without taking it. Go's poller is
// edge-triggered and forgets a readiness it saw before rc.Read began, so
// rc.Read must look first and park only on EAGAIN.
func (t *targetReader) peek(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, 0, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
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
