package tunnel

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/udpgro"
)

// batchReader reads a socket in batches (recvmmsg) into quic-go's
// messages, keeping each source address as the kernel wrote it: a
// forwarded packet, which quic-go never sees, so costs no allocation, where
// ipv4.PacketConn.ReadBatch makes a *net.UDPAddr for every packet. It is
// used by one goroutine at a time (quic-go's reader).
type batchReader struct {
	rc     syscall.RawConn
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrInet6 // room for either family
	readFn func(fd uintptr) bool   // bound once: a closure per call would allocate
	batch  int                     // how many headers the call fills
	n      int
	err    error
}

// mmsghdr is struct mmsghdr; Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func newBatchReader(uc *net.UDPConn) *batchReader {
	rc, err := uc.SyscallConn()
	r := &batchReader{rc: rc, err: err}
	r.readFn = r.readOnce
	return r
}

// read reads at least one packet into ms, blocking until there is one.
func (r *batchReader) read(ms []ipv4.Message) (int, error) {
	if r.rc == nil {
		return 0, r.err
	}
	if len(r.hdrs) < len(ms) {
		r.hdrs, r.iovs, r.names = make([]mmsghdr, len(ms)), make([]unix.Iovec, len(ms)), make([]unix.RawSockaddrInet6, len(ms))
	}
	for i := range ms {
		b := ms[i].Buffers[0]
		r.iovs[i].Base = &b[0]
		r.iovs[i].SetLen(len(b))
		h := &r.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.names[i])), Namelen: uint32(unsafe.Sizeof(r.names[i])), Iov: &r.iovs[i]}
		h.SetIovlen(1)
		if oob := ms[i].OOB; len(oob) > 0 {
			h.Control = &oob[0]
			h.SetControllen(len(oob))
		}
	}
	r.batch = len(ms)
	if err := r.rc.Read(r.readFn); err != nil {
		return 0, err
	}
	if r.err != nil {
		return 0, r.err
	}
	for i := range ms[:r.n] {
		ms[i].N, ms[i].NN, ms[i].Flags = int(r.hdrs[i].n), int(r.hdrs[i].hdr.Controllen), int(r.hdrs[i].hdr.Flags)
		ms[i].Addr = nil
	}
	return r.n, nil
}

func (r *batchReader) readOnce(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.batch), unix.MSG_DONTWAIT, 0, 0)
	r.n, r.err = int(n), nil
	if errno != 0 {
		r.n, r.err = 0, errno
	}
	return errno != unix.EAGAIN
}

// source returns the source of message i of the last read.
func (r *batchReader) source(_ []ipv4.Message, i int) netip.AddrPort {
	return udpgro.Source(&r.names[i])
}

// addr returns the source of message i of the last read as quic-go takes
// it, with its zone.
func (r *batchReader) addr(ms []ipv4.Message, i int) *net.UDPAddr {
	ua := net.UDPAddrFromAddrPort(r.source(ms, i))
	if sa := &r.names[i]; sa.Family == unix.AF_INET6 && sa.Scope_id != 0 {
		ua.Zone = strconv.Itoa(int(sa.Scope_id))
	}
	return ua
}
