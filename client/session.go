package client

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Session is a long-lived way to a proxy for programs that open tunnels for
// hours, such as a local SOCKS5 entry point: it holds one connection, and
// when that connection has died or the proxy is going away (GOAWAY, a
// restart), the next tunnel request dials a new one, racing HTTP/3 against
// HTTP/2 again. Tunnels already open keep their old connection until the
// connection after it is replaced too: the session holds on to one replaced
// connection at a time, so a proxy that restarts often cannot make it pile
// up connections. It is safe for concurrent use.
type Session struct {
	d        *Dialer
	proxyURL string

	mu     sync.Mutex
	conn   *Conn // the current connection
	old    *Conn // the connection it replaced, if any, for its open tunnels
	closed bool
}

// NewSession connects to proxyURL with d and returns a Session on that
// connection.
func NewSession(ctx context.Context, d *Dialer, proxyURL string) (*Session, error) {
	c, err := d.Dial(ctx, proxyURL)
	if err != nil {
		return nil, err
	}
	return &Session{d: d, proxyURL: proxyURL, conn: c}, nil
}

var errSessionClosed = errors.New("client: session closed")

// current returns a usable connection, dialling a new one if the current
// one is not.
func (s *Session) current(ctx context.Context) (*Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSessionClosed
	}
	if s.conn.Usable() {
		return s.conn, nil
	}
	c, err := s.d.Dial(ctx, s.proxyURL)
	if err != nil {
		return nil, err
	}
	if s.old != nil {
		s.old.Close()
	}
	s.old, s.conn = s.conn, c
	return c, nil
}

// Conn returns the connection tunnels are opened on now.
func (s *Session) Conn() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// DialTCP opens a TCP tunnel to target ("host:port").
func (s *Session) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	c, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	return c.DialTCP(ctx, target)
}

// ListenUDP opens a UDP tunnel to target ("host:port").
func (s *Session) ListenUDP(ctx context.Context, target string) (net.PacketConn, error) {
	c, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	return c.ListenUDP(ctx, target)
}

// Close closes every connection the session made, and their tunnels.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.conn.Close()
	if s.old != nil {
		err = errors.Join(err, s.old.Close())
	}
	return err
}
