package h3proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/capsule"
	"github.com/masqued/masqued/internal/proxyclient"
)

// maxUDPPayload is the largest UDP payload a UDPConn reads or writes.
const maxUDPPayload = 65527

// UDPConn is the client side of a CONNECT-UDP tunnel as a net.PacketConn.
// Packets travel as QUIC DATAGRAM frames when the proxy supports them and as
// DATAGRAM capsules on the request stream otherwise. A packet too large for
// the path is dropped, as a network would drop it, and counted; the tunnel
// lives on. Once the proxy has ended the tunnel because its target refused
// the packets (a reset with H3_CONNECT_ERROR), ReadFrom and WriteTo return a
// *proxyclient.TargetRefusedError. Read and write may run concurrently;
// ReadFrom calls are serialised, as are WriteTo calls.
type UDPConn struct {
	rs        *http3.RequestStream
	send      sendSide // capsule mode writes the stream; Close may race them
	conn      *quic.Conn
	ctl       *control
	qsid      uint64 // quarter stream ID
	datagrams bool
	target    net.Addr

	closeCtx  context.Context // done when the tunnel ends; its cause is ReadFrom's error
	closeConn context.CancelCauseFunc
	deadline  proxyclient.ReadDeadline

	// Datagram mode: received HTTP Datagrams, Context ID first, queued by
	// the connection's dispatcher (and by watchStream for DATAGRAM capsules).
	in      chan []byte
	watcher sync.WaitGroup

	readMu sync.Mutex // guards cr, rbuf (capsule mode)
	cr     *capsule.Reader
	rbuf   []byte

	writeMu sync.Mutex // one capsule at a time on the stream (capsule mode)

	dropped   atomic.Uint64
	closeOnce sync.Once
}

// inQueueLen bounds the received datagrams a UDPConn holds: a bandwidth-delay
// product's worth of full-size packets at a few Gbit/s and a millisecond.
const inQueueLen = 1024

// newUDPConn prepares the tunnel on rs, whose request is not sent yet: in
// datagram mode it is registered for dispatch at once. start runs it once the
// proxy has accepted; closeQueues undoes it if not.
func newUDPConn(c *Client, rs *http3.RequestStream, target net.Addr) *UDPConn {
	u := &UDPConn{
		rs:        rs,
		send:      sendSide{rs: rs},
		conn:      c.conn,
		ctl:       c.ctl,
		qsid:      uint64(rs.StreamID() / 4),
		datagrams: c.datagrams,
		target:    target,
	}
	u.closeCtx, u.closeConn = context.WithCancelCause(context.Background())
	u.deadline.Init(u.closeCtx)
	if u.datagrams {
		u.in = make(chan []byte, inQueueLen)
		u.ctl.register(u.qsid, u)
	}
	return u
}

func (u *UDPConn) start() {
	br := bufio.NewReaderSize(u.rs, 16<<10)
	if !u.datagrams {
		u.cr = capsule.NewReader(br)
		u.rbuf = make([]byte, 8+maxUDPPayload)
		return
	}
	// The stream still carries capsules and, above all, its end: watch it
	// so that the tunnel's end unblocks ReadFrom.
	u.watcher.Add(1)
	go u.watchStream(capsule.NewReader(br))
}

// closeQueues stops dispatch to u and ends its reads with cause, unless
// they have ended already.
func (u *UDPConn) closeQueues(cause error) {
	if u.datagrams {
		u.ctl.unregister(u.qsid)
	}
	u.closeConn(cause)
}

// refusal returns a *proxyclient.TargetRefusedError, and ends the tunnel
// with it, if err is the proxy's reset of the stream with H3_CONNECT_ERROR,
// its word that the target refused the tunnel's packets; else nil. Called on
// every capsule-mode write, it must not allocate when err is nil (see
// tooLarge).
func (u *UDPConn) refusal(err error) error {
	if err == nil {
		return nil
	}
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote || se.ErrorCode != quic.StreamErrorCode(http3.ErrCodeConnectError) {
		return nil
	}
	u.closeQueues(&proxyclient.TargetRefusedError{Target: u.target.String()})
	return context.Cause(u.closeCtx)
}

// deliver queues one received HTTP Datagram for ReadFrom, or drops it if the
// queue is full. The dispatcher calls it; it never blocks.
func (u *UDPConn) deliver(b []byte) {
	select {
	case u.in <- b:
	default:
		u.dropped.Add(1)
	}
}

// watchStream reads the stream until it ends, delivering DATAGRAM capsules
// like QUIC datagrams (a rare path: each is copied).
func (u *UDPConn) watchStream(cr *capsule.Reader) {
	defer u.watcher.Done()
	buf := make([]byte, 8+maxUDPPayload)
	for {
		n, err := cr.ReadDatagram(buf)
		switch {
		case err == nil:
			u.deliver(append([]byte(nil), buf[:n]...))
		case errors.Is(err, capsule.ErrTooLarge):
			u.dropped.Add(1)
		default:
			if u.refusal(err) == nil {
				u.closeQueues(net.ErrClosed)
			}
			return
		}
	}
}

// Dropped counts packets dropped in either direction: too large for the path,
// or with an unknown Context ID.
func (u *UDPConn) Dropped() uint64 { return u.dropped.Load() }

// ReadFrom reads the next packet from the tunnel's target.
func (u *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	u.readMu.Lock()
	defer u.readMu.Unlock()
	for {
		var b []byte
		if u.datagrams {
			ctx := u.deadline.Context()
			select {
			case b = <-u.in:
			case <-ctx.Done():
				return 0, nil, u.readError(ctx.Err())
			}
		} else {
			n, err := u.cr.ReadDatagram(u.rbuf)
			if errors.Is(err, capsule.ErrTooLarge) {
				u.dropped.Add(1)
				continue
			}
			if err != nil {
				return 0, nil, u.readError(err)
			}
			b = u.rbuf[:n]
		}
		payload, err := capsule.SplitContext(b)
		if err != nil {
			u.dropped.Add(1)
			continue
		}
		return copy(p, payload), u.target, nil
	}
}

// readError maps why a read stopped: the tunnel's end (net.ErrClosed, or
// the target's refusal), or the read deadline (which cancels the
// datagram-mode wait, or times out the stream read).
func (u *UDPConn) readError(err error) error {
	if refused := u.refusal(err); refused != nil {
		return refused
	}
	switch {
	case u.closeCtx.Err() != nil:
		return context.Cause(u.closeCtx)
	case errors.Is(err, context.Canceled), errors.Is(err, os.ErrDeadlineExceeded):
		return os.ErrDeadlineExceeded
	}
	return err
}

// WriteTo sends p to the tunnel's target; addr is ignored, as the tunnel has
// one target.
func (u *UDPConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if len(p) > maxUDPPayload {
		u.dropped.Add(1)
		return len(p), nil
	}
	if u.closeCtx.Err() != nil {
		return 0, context.Cause(u.closeCtx)
	}
	b := proxyclient.UDPDatagram(p)
	defer proxyclient.PutPacket(b)
	pkt := *b
	var err error
	if u.datagrams {
		// Frame the quarter stream ID in place: http3's SendDatagram would
		// allocate and copy per packet.
		start := capsule.PutVarint(pkt, proxyclient.UDPHeadroom, u.qsid)
		err = u.conn.SendDatagram(pkt[start:])
		if tooLarge(err) {
			u.dropped.Add(1)
			return len(p), nil
		}
	} else {
		start := capsule.PutDatagramHeader(pkt, proxyclient.UDPHeadroom)
		u.writeMu.Lock()
		_, err = u.send.write(pkt[start:])
		u.writeMu.Unlock()
	}
	if refused := u.refusal(err); refused != nil {
		return 0, refused
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the tunnel.
func (u *UDPConn) Close() error {
	u.closeQueues(net.ErrClosed)
	u.rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	err := u.send.close()
	u.watcher.Wait()
	u.closeOnce.Do(u.ctl.closed)
	return err
}

// LocalAddr returns the local address of the connection to the proxy.
func (u *UDPConn) LocalAddr() net.Addr { return u.conn.LocalAddr() }

// RemoteAddr returns the tunnel's target.
func (u *UDPConn) RemoteAddr() net.Addr { return u.target }

// SetDeadline sets the read deadline; writes do not block on the network.
func (u *UDPConn) SetDeadline(t time.Time) error { return u.SetReadDeadline(t) }

// SetReadDeadline makes ReadFrom return os.ErrDeadlineExceeded at t; the
// zero time clears it.
func (u *UDPConn) SetReadDeadline(t time.Time) error {
	if !u.datagrams {
		return u.rs.SetReadDeadline(t)
	}
	u.deadline.Set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: WriteTo does not wait for the
// network.
func (u *UDPConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer accept quic-go's socket-buffer tuning,
// which has no meaning for a tunnel, so that quic-go does not warn about it.
func (u *UDPConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer: see SetReadBuffer.
func (u *UDPConn) SetWriteBuffer(int) error { return nil }
