package h2proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqued/masqued/internal/capsule"
	"github.com/masqued/masqued/internal/proxyclient"
)

// errNoDeadline: an HTTP/2 stream has no deadlines of its own, and emulating
// them by resetting the stream would not let a caller carry on after one.
var errNoDeadline = errors.New("h2proxy: deadlines are not supported on HTTP/2 tunnels")

func (s *stream) setDeadline(f func(net.Conn) error) error {
	if s.conn == nil {
		return errNoDeadline
	}
	return f(s.conn)
}

// tcpConn is a TCP tunnel as a net.Conn.
type tcpConn struct {
	*stream
	remote    net.Addr
	closeOnce sync.Once
	closeErr  error
}

func (c *tcpConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *tcpConn) CloseWrite() error           { return c.closeW() }
func (c *tcpConn) LocalAddr() net.Addr         { return c.local }
func (c *tcpConn) RemoteAddr() net.Addr        { return c.remote }

func (c *tcpConn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.abort() })
	return c.closeErr
}

func (c *tcpConn) SetDeadline(t time.Time) error {
	return c.setDeadline(func(nc net.Conn) error { return nc.SetDeadline(t) })
}

func (c *tcpConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(func(nc net.Conn) error { return nc.SetReadDeadline(t) })
}

func (c *tcpConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(func(nc net.Conn) error { return nc.SetWriteDeadline(t) })
}

// maxUDPPayload is the largest UDP payload a tunnel carries.
const maxUDPPayload = 65527

// inQueueLen bounds the packets a udpConn holds for ReadFrom.
const inQueueLen = 256

// udpConn is a UDP tunnel as a net.PacketConn: every packet goes to the
// tunnel's one target in a DATAGRAM capsule, and comes back in one. A pump
// goroutine reads capsules into a queue, so that reads can have deadlines
// (quic-go's Transport needs them to close) although the stream has none.
// Once the proxy has ended the tunnel because its target refused the packets
// (see refusedBy), ReadFrom and WriteTo return a
// *proxyclient.TargetRefusedError.
type udpConn struct {
	*stream
	remote   net.Addr
	ended    context.Context // done when the tunnel ends; its cause is ReadFrom's error
	end      context.CancelCauseFunc
	closing  atomic.Bool // Close has begun: the stream's end is ours
	deadline proxyclient.ReadDeadline
	in       chan *[]byte // payloads in proxyclient packet buffers
	pump     sync.WaitGroup
	dropped  atomic.Uint64
	writeMu  sync.Mutex // one capsule at a time on the stream

	closeOnce sync.Once
	closeErr  error
}

func newUDPConn(s *stream, remote net.Addr) *udpConn {
	u := &udpConn{
		stream: s,
		remote: remote,
		in:     make(chan *[]byte, inQueueLen),
	}
	u.ended, u.end = context.WithCancelCause(context.Background())
	u.deadline.Init(u.ended)
	u.pump.Add(1)
	go u.readCapsules()
	return u
}

// readCapsules queues the UDP payloads of the stream's DATAGRAM capsules
// until the stream ends, dropping (and counting) what does not fit: capsules
// with another Context ID or too large, and packets beyond a full queue.
func (u *udpConn) readCapsules() {
	defer u.pump.Done()
	cr := capsule.NewReader(bufio.NewReaderSize(u.stream.Reader, 64<<10))
	buf := make([]byte, 8+maxUDPPayload)
	for {
		n, err := cr.ReadDatagram(buf)
		if errors.Is(err, capsule.ErrTooLarge) {
			u.dropped.Add(1)
			continue
		}
		if err != nil {
			var cause error = net.ErrClosed
			if !u.closing.Load() && u.refusedBy(err) {
				cause = &proxyclient.TargetRefusedError{Target: u.remote.String()}
			}
			u.end(cause)
			return
		}
		payload, err := capsule.SplitContext(buf[:n])
		if err != nil {
			u.dropped.Add(1)
			continue
		}
		b := proxyclient.GetPacket(len(payload))
		copy(*b, payload)
		select {
		case u.in <- b:
		default:
			proxyclient.PutPacket(b)
			u.dropped.Add(1)
		}
	}
}

// Dropped counts received packets dropped: not UDP payloads, too large, or
// not read in time.
func (u *udpConn) Dropped() uint64 { return u.dropped.Load() }

// ReadFrom reads the next packet from the tunnel's target. A packet longer
// than p is truncated, as on a UDP socket.
func (u *udpConn) ReadFrom(p []byte) (int, net.Addr, error) {
	ctx := u.deadline.Context()
	select {
	case b := <-u.in:
		return u.take(p, b), u.remote, nil
	case <-ctx.Done():
		if u.ended.Err() != nil {
			select {
			case b := <-u.in: // what arrived before the end
				return u.take(p, b), u.remote, nil
			default:
			}
			return 0, nil, context.Cause(u.ended)
		}
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// take copies a queued packet into p and gives its buffer back.
func (u *udpConn) take(p []byte, b *[]byte) int {
	n := copy(p, *b)
	proxyclient.PutPacket(b)
	return n
}

// WriteTo sends p to the tunnel's target; addr is ignored, as the tunnel has
// one target.
func (u *udpConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if len(p) > maxUDPPayload {
		return 0, errors.New("h2proxy: packet larger than a UDP payload")
	}
	if u.ended.Err() != nil {
		return 0, context.Cause(u.ended)
	}
	b := proxyclient.UDPDatagram(p)
	defer proxyclient.PutPacket(b)
	start := capsule.PutDatagramHeader(*b, proxyclient.UDPHeadroom)
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if _, err := u.w.Write((*b)[start:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the tunnel.
func (u *udpConn) Close() error {
	u.closeOnce.Do(func() {
		u.closing.Store(true)
		u.closeErr = u.abort()
		u.end(net.ErrClosed)
		u.pump.Wait()
	})
	return u.closeErr
}

func (u *udpConn) LocalAddr() net.Addr  { return u.local }
func (u *udpConn) RemoteAddr() net.Addr { return u.remote }

// SetDeadline sets the read deadline; writes do not wait for the target.
func (u *udpConn) SetDeadline(t time.Time) error { return u.SetReadDeadline(t) }

func (u *udpConn) SetReadDeadline(t time.Time) error {
	u.deadline.Set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: WriteTo waits only for the
// stream's flow control.
func (u *udpConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer accept quic-go's socket-buffer tuning,
// which has no meaning for a tunnel, so that quic-go does not warn.
func (u *udpConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer: see SetReadBuffer.
func (u *udpConn) SetWriteBuffer(int) error { return nil }
