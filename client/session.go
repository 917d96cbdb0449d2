package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
)

// Session is a long-lived way to a proxy for programs that open tunnels for
// hours, such as a local SOCKS5 entry point: it holds one connection, and
// when that connection has died or the proxy is going away (GOAWAY, a
// restart), the next tunnel request dials a new one, racing HTTP/3 against
// HTTP/2 again. Tunnels already open keep their old connection until the
// connection after it is replaced too: the session holds on to one replaced
// connection at a time, so a proxy that restarts often cannot make it pile
// up connections. It is safe for concurrent use.
//
// A connection that went away is no evidence that HTTP/3 is blocked: a
// draining proxy sends GOAWAY, and its successor may serve TCP a moment
// before QUIC. So a redial that lands on TCP is not remembered (see
// Dialer.Remember), and while the session is on TCP without such evidence,
// tunnel requests try HTTP/3 again in the background (at most one attempt at
// a time, upgradeRetry apart after a failure) and move the session to it once
// it answers. upgradeTries failures in a row are evidence, and are
// remembered as a lost race is.
type Session struct {
	d         *Dialer
	proxyURL  string
	authority string

	ctx    context.Context // ends the background HTTP/3 attempt at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the background HTTP/3 attempt

	mu        sync.Mutex
	conn      *Conn // the current connection
	old       *Conn // the connection it replaced, if any, for its open tunnels
	closed    bool
	upgrading bool      // a background HTTP/3 attempt runs
	failures  int       // background HTTP/3 attempts failed in a row
	nextTry   time.Time // no background attempt before this
}

// Background HTTP/3 attempts of a Session on TCP: the pause after a failed
// one, and how many failures in a row count as HTTP/3 being blocked.
const (
	upgradeRetry = 5 * time.Second
	upgradeTries = 3
)

// NewSession connects to proxyURL with d and returns a Session on that
// connection.
func NewSession(ctx context.Context, d *Dialer, proxyURL string) (*Session, error) {
	c, err := d.Dial(ctx, proxyURL)
	if err != nil {
		return nil, err
	}
	authority, _ := proxyconn.Authority(proxyURL) // Dial has checked it
	s := &Session{d: d, proxyURL: proxyURL, authority: authority, conn: c}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
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
		s.upgradeLocked()
		return s.conn, nil
	}
	c, err := s.d.redial(ctx, s.proxyURL)
	if err != nil {
		return nil, err
	}
	s.replaceLocked(c)
	return c, nil
}

// replaceLocked makes c the current connection; the one it replaces stays
// open for its tunnels, and the one before that is closed.
func (s *Session) replaceLocked(c *Conn) {
	if s.old != nil {
		s.old.Close()
	}
	s.old, s.conn = s.conn, c
}

// upgradeLocked starts a background HTTP/3 attempt when the session is on
// TCP with nothing to say HTTP/3 is blocked, unless one runs or failed
// recently.
func (s *Session) upgradeLocked() {
	if s.upgrading || s.conn.transport == HTTP3 || s.d.Transport != Auto ||
		time.Now().Before(s.nextTry) || s.d.rememberedTCP(s.authority) {
		return
	}
	s.upgrading = true
	s.wg.Go(func() {
		// quic-go's handshake timeout bounds the attempt; Close cuts it.
		c, err := s.d.dialH3(s.ctx, s.proxyURL)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.upgrading = false
		switch {
		case s.closed:
			if c != nil {
				c.Close()
			}
		case err != nil:
			s.nextTry = time.Now().Add(upgradeRetry)
			if s.failures++; s.failures >= upgradeTries {
				s.failures = 0
				s.d.remember(s.authority)
			}
		default:
			s.failures = 0
			s.replaceLocked(c)
		}
	})
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
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait() // the attempt takes mu to finish
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.conn.Close()
	if s.old != nil {
		err = errors.Join(err, s.old.Close())
	}
	return err
}
