package h3

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/udpgro"
)

// groState is a forwardConn's batched reading on Linux. masqued sends the
// packets it forwards to a client in runs of equal size with one UDP_SEGMENT
// (GSO) call; with UDP_GRO on the socket the kernel hands such a run over in
// one recvmsg, with the size of its segments, instead of one recvfrom per
// packet. ReadFrom splits the run at once: forwarded segments go to their
// routes, and quic-go's are served one per ReadFrom from the buffer,
// copied, before the socket is read again.
type groState struct {
	// readMu serialises ReadFrom, which reads and advances gro's buffer.
	// quic-go's transport calls ReadFrom from its one read goroutine only,
	// so it is never contended; it makes a second reader safe all the same.
	readMu sync.Mutex
	gro    *groReader // guarded by readMu; nil without UDP_GRO: readOne
}

// groBufLen is the size of a GRO read's buffer: room for the largest UDP
// payload, which is also the most the kernel coalesces into one read
// (64 KiB: the coalesced run is one UDP packet as far as its length goes).
const groBufLen = 1 << 16

// groReader is recvmsg's buffer, header and results for a forwardConn with
// UDP_GRO, set up once: a read allocates nothing.
type groReader struct {
	rc    syscall.RawConn
	laddr net.Addr // the socket's, for errors
	// recvFn is recv, bound once for rc.Read: a method value per call
	// would allocate per read.
	recvFn func(fd uintptr) bool
	hdr    unix.Msghdr
	iov    unix.Iovec
	name   unix.RawSockaddrInet6 // the source address; room for either family
	oob    [udpgro.OOBLen]byte
	n      int           // recv's result: bytes read, or
	errno  syscall.Errno // its error

	buf [groBufLen]byte
	// The run in buf: end bytes, in segments of seg bytes (the last may be
	// shorter), all from from. split has handled those before scan.
	end, seg, scan int
	from           netip.AddrPort
	// quic[next:nquic] are the offsets in buf of the segments that split
	// found to be quic-go's and ReadFrom has not yet handed out. A run has
	// at most 64 segments (the kernel's UDP_GRO_CNT_MAX); should one have
	// more, split stops when quic is full and goes on once it is served.
	quic        [64]int
	next, nquic int
}

// initGRO turns UDP_GRO on for c's socket and gives c a groReader. A kernel
// without UDP_GRO (before Linux 5.0) refuses it, and c reads one packet per
// call (readOne), as it does for a proxy address with a zone (an IPv6
// link-local proxy): recv's source address carries no zone, so it would
// never compare equal to the proxy's.
func (c *forwardConn) initGRO() {
	if c.proxy.Addr().Zone() != "" {
		return
	}
	rc, err := c.udp.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = udpgro.Enable(fd)
	}); err != nil || serr != nil {
		return
	}
	g := &groReader{rc: rc, laddr: c.udp.LocalAddr()}
	g.recvFn = g.recv
	g.iov.Base = &g.buf[0]
	g.iov.SetLen(len(g.buf))
	g.hdr.Name = (*byte)(unsafe.Pointer(&g.name))
	g.hdr.Iov = &g.iov
	g.hdr.SetIovlen(1)
	g.hdr.Control = &g.oob[0]
	c.gro = g
}

// ReadFrom returns the next packet that is quic-go's, after handing any
// forwarded packets before it to their tunnels. A packet longer than p is
// cut to len(p), as a recvfrom into p would cut it.
func (c *forwardConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	g := c.gro
	if g == nil {
		return c.readOne(p)
	}
	for {
		if g.next < g.nquic {
			off := g.quic[g.next]
			g.next++
			return copy(p, g.buf[off:min(off+g.seg, g.end)]), c.addrOf(g.from), nil
		}
		if g.scan == g.end {
			if err := g.read(); err != nil {
				return 0, nil, err
			}
		}
		c.split(g)
	}
}

// split goes through g's run from g.scan: it hands forwarded segments to
// their routes and queues quic-go's, until the run ends or the queue is full.
func (c *forwardConn) split(g *groReader) {
	g.next, g.nquic = 0, 0
	for g.scan < g.end && g.nquic < len(g.quic) {
		off := g.scan
		g.scan = min(off+g.seg, g.end)
		if !c.forwarded(g.buf[off:g.scan], g.from) {
			g.quic[g.nquic] = off
			g.nquic++
		}
	}
}

// read waits for the next packet or run of coalesced packets and makes it
// the run being served. Its errors are a ReadFromUDP's: the socket closed,
// past its read deadline, or recvmsg's.
func (g *groReader) read() error {
	g.hdr.Namelen = uint32(unsafe.Sizeof(g.name))
	g.hdr.SetControllen(len(g.oob))
	g.hdr.Flags = 0
	if err := g.rc.Read(g.recvFn); err != nil {
		return err
	}
	if g.errno != 0 {
		return &net.OpError{Op: "read", Net: g.laddr.Network(), Source: g.laddr, Err: os.NewSyscallError("recvmsg", g.errno)}
	}
	n := g.n
	seg := udpgro.SegmentSize(g.oob[:g.hdr.Controllen])
	if seg <= 0 || seg > n {
		seg = n // not coalesced
	}
	if g.hdr.Flags&unix.MSG_TRUNC != 0 && seg < n {
		// A run longer than the buffer (a kernel that coalesces past
		// 64 KiB): its last segment here is cut off, and is dropped.
		n -= n % seg
	}
	g.end, g.seg, g.scan, g.from = n, seg, 0, udpgro.Source(&g.name)
	return nil
}

// recv is rc.Read's callback: one recvmsg without blocking. On EAGAIN it
// returns false, and rc.Read parks until the socket is readable.
func (g *groReader) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&g.hdr)), unix.MSG_DONTWAIT)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		g.n, g.errno = int(n), errno
		return true
	}
}
