package h2

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
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
	c.closeOnce.Do(func() { c.closeErr = c.closeBoth() })
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

// UDPConn is the client side of a CONNECT-UDP tunnel as a net.PacketConn,
// the same type over HTTP/2 and HTTP/1.1 as over client/h3's HTTP/3: every
// packet goes to the tunnel's one target in a DATAGRAM capsule, and comes
// back in one. Once the proxy has ended the tunnel because its target
// refused the packets (see stream.Refused), ReadFrom and WriteTo return a
// *proxyconn.TargetRefusedError.
type UDPConn = proxyconn.UDPConn

// udpStream is a UDP tunnel's stream as UDPConn uses it.
type udpStream struct{ *stream }

func (s udpStream) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s udpStream) Close() error                { return s.closeBoth() }

// Refused reports whether err, which ended a UDP tunnel's stream that the
// client had not closed, is how masqued's h2proxy front says that the target
// refused the tunnel's packets (masque.ErrTargetRefused): over HTTP/2 it
// ends the stream cleanly, the one time it ends a UDP tunnel so; over
// HTTP/1.1 it resets the TCP connection, as a clean close reads the same as
// a proxy that went away.
func (s udpStream) Refused(err error) bool {
	if s.conn == nil {
		return errors.Is(err, io.EOF)
	}
	return errors.Is(err, syscall.ECONNRESET)
}
