package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
)

// Conn is a connection that tunnels are opened on: a connection to the
// proxy (a *client.Conn), or Direct for the baseline. Its methods are called
// concurrently.
type Conn interface {
	DialTCP(ctx context.Context, target string) (net.Conn, error)
	ListenUDP(ctx context.Context, target string) (net.PacketConn, error)
	Close() error
}

// tunnel is an open tunnel that a worker runs operations on, one at a time.
type tunnel interface {
	// do runs one operation and returns the payload bytes it moved both
	// ways. stop ends with the run: do returns soon after it is done.
	do(stop context.Context, timeout time.Duration) (int64, error)
	Close() error
}

// tcpEcho sends size bytes through a CONNECT tunnel to an echo server and
// reads them back.
type tcpEcho struct {
	conn       net.Conn
	seq        uint64
	wbuf, rbuf []byte
	closeOnce  sync.Once
	closeErr   error
}

func newTCPEcho(conn net.Conn, size int) *tcpEcho {
	return &tcpEcho{conn: conn, wbuf: make([]byte, size), rbuf: make([]byte, size)}
}

// do times out by closing the tunnel: HTTP/2 streams have no deadlines, and
// a TCP tunnel that stalled mid-message is of no further use anyway.
func (t *tcpEcho) do(stop context.Context, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(stop, timeout)
	defer cancel()
	defer context.AfterFunc(ctx, func() { t.Close() })()
	t.seq++
	binary.BigEndian.PutUint64(t.wbuf, t.seq)
	if _, err := t.conn.Write(t.wbuf); err != nil {
		return 0, withCause(ctx, err)
	}
	if _, err := io.ReadFull(t.conn, t.rbuf); err != nil {
		return int64(len(t.wbuf)), withCause(ctx, err)
	}
	if !bytes.Equal(t.rbuf[:8], t.wbuf[:8]) {
		return int64(2 * len(t.wbuf)), errMismatch
	}
	return int64(2 * len(t.wbuf)), nil
}

// Close closes the tunnel once; do may have closed it already.
func (t *tcpEcho) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.conn.Close() })
	return t.closeErr
}

// withCause returns ctx's error in place of err once ctx is done, so that a
// read failing because do closed the tunnel at its deadline counts as a
// timeout.
func withCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// udpEcho sends a datagram of size bytes through a CONNECT-UDP tunnel to an
// echo server and waits for it to come back. A lost datagram is a timeout,
// and the tunnel carries on.
type udpEcho struct {
	pc         net.PacketConn
	to         net.Addr // the target; tunnels ignore it, but say it anyway
	seq        uint64
	wbuf, rbuf []byte
}

func newUDPEcho(pc net.PacketConn, size int) *udpEcho {
	return &udpEcho{pc: pc, to: pc.(remoteAddr).RemoteAddr(), wbuf: make([]byte, size), rbuf: make([]byte, size+1)}
}

func (u *udpEcho) do(stop context.Context, timeout time.Duration) (int64, error) {
	u.seq++
	binary.BigEndian.PutUint64(u.wbuf, u.seq)
	if err := u.pc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	defer context.AfterFunc(stop, func() { _ = u.pc.SetReadDeadline(time.Unix(1, 0)) })()
	if _, err := u.pc.WriteTo(u.wbuf, u.to); err != nil {
		return 0, err
	}
	for {
		n, _, err := u.pc.ReadFrom(u.rbuf)
		if err != nil {
			return int64(len(u.wbuf)), err
		}
		if n >= 8 && binary.BigEndian.Uint64(u.rbuf) == u.seq {
			if n != len(u.wbuf) {
				return int64(len(u.wbuf) + n), errMismatch
			}
			return int64(2 * n), nil
		}
		// An echo of an earlier datagram that timed out: skip it.
	}
}

func (u *udpEcho) Close() error { return u.pc.Close() }

// remoteAddr is what the tunnels' PacketConns have beyond net.PacketConn.
type remoteAddr interface{ RemoteAddr() net.Addr }

// h3Get fetches size bytes from an HTTP/3 origin with QUIC inside a
// CONNECT-UDP tunnel; the first request also makes the inner connection.
type h3Get struct {
	pc  net.PacketConn
	tr  *proxyconn.OriginTransport
	url string
}

func newH3Get(pc net.PacketConn, target string, size int, originTLS *tls.Config) *h3Get {
	return &h3Get{
		pc:  pc,
		tr:  proxyconn.NewOriginTransport(pc, originTLS, nil),
		url: "https://" + target + "/?n=" + strconv.Itoa(size),
	}
}

func (h *h3Get) do(stop context.Context, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(stop, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, errStatus(resp.StatusCode)
	}
	return n, nil
}

func (h *h3Get) Close() error {
	err := h.tr.Close()
	if perr := h.pc.Close(); err == nil {
		err = perr
	}
	return err
}

// Direct opens the baseline's "tunnels": sockets straight to the targets,
// for the same work without the proxy.
type Direct struct{}

func (Direct) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

func (Direct) ListenUDP(ctx context.Context, target string) (net.PacketConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", target)
	if err != nil {
		return nil, err
	}
	return &connectedUDP{c.(*net.UDPConn)}, nil
}

func (Direct) Close() error { return nil }

// connectedUDP is a connected UDP socket as a tunnel's PacketConn: it writes
// to its peer whatever address it is given, as a tunnel does. It hides the
// *net.UDPConn so that quic-go does not pass addresses to a connected socket.
type connectedUDP struct{ c *net.UDPConn }

func (u *connectedUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := u.c.Read(b)
	return n, u.c.RemoteAddr(), err
}
func (u *connectedUDP) WriteTo(b []byte, _ net.Addr) (int, error) { return u.c.Write(b) }
func (u *connectedUDP) Close() error                              { return u.c.Close() }
func (u *connectedUDP) LocalAddr() net.Addr                       { return u.c.LocalAddr() }
func (u *connectedUDP) RemoteAddr() net.Addr                      { return u.c.RemoteAddr() }
func (u *connectedUDP) SetDeadline(t time.Time) error             { return u.c.SetDeadline(t) }
func (u *connectedUDP) SetReadDeadline(t time.Time) error         { return u.c.SetReadDeadline(t) }
func (u *connectedUDP) SetWriteDeadline(t time.Time) error        { return u.c.SetWriteDeadline(t) }
func (u *connectedUDP) SetReadBuffer(n int) error                 { return u.c.SetReadBuffer(n) }
func (u *connectedUDP) SetWriteBuffer(n int) error                { return u.c.SetWriteBuffer(n) }
