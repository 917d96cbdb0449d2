package localproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// SOCKS5Server is a SOCKS5 server (RFC 1928) without authentication that
// serves CONNECT and UDP ASSOCIATE through a Tunneler. It answers BIND, and
// any other command, with "command not supported". Its zero value (with
// Tunneler set) is ready to use; set fields before the first Serve. It is safe
// for concurrent use.
type SOCKS5Server struct {
	Tunneler Tunneler // required

	// HandshakeTimeout bounds the time from accepting a connection to the
	// end of its request; 0 = 10 seconds.
	HandshakeTimeout time.Duration
	// DialTimeout bounds opening a tunnel; 0 = 30 seconds.
	DialTimeout time.Duration
	// MaxConns bounds the connections served at once, per listener; further
	// ones wait to be accepted. 0 = 1024.
	MaxConns int
	// MaxUDPFlows bounds the destinations of one UDP association, each a
	// CONNECT-UDP tunnel; datagrams to more are dropped. 0 = 64.
	MaxUDPFlows int
	// UDPIdleTimeout closes a destination's tunnel after this long without
	// a datagram either way; 0 = 2 minutes.
	UDPIdleTimeout time.Duration
	// Logger gets one warning per tunnel that failed, with its cause but,
	// unless LogTargets, not its target, and never the client's address;
	// nil = silent.
	Logger *slog.Logger
	// LogTargets adds the target to Logger's records.
	LogTargets bool

	g group
}

// Serve accepts connections on l until Close or Shutdown, and then returns
// http.ErrServerClosed. Like http.Server.Serve, it always closes l.
func (s *SOCKS5Server) Serve(l net.Listener) error {
	ll := newLimitListener(l, orDefault(s.MaxConns, 1024))
	defer ll.Close()
	if !s.g.addListener(ll) {
		return http.ErrServerClosed
	}
	defer s.g.removeListener(ll)
	for {
		c, err := ll.Accept()
		if err != nil {
			if s.g.isClosed() {
				return http.ErrServerClosed
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(50 * time.Millisecond) // out of descriptors: wait, as net/http does
				continue
			}
			return err
		}
		s.g.goConn(c, s.serveConn)
	}
}

// Close closes the listeners and every connection and UDP association at
// once, and waits for their goroutines to end.
func (s *SOCKS5Server) Close() error { return s.g.close() }

// Shutdown closes the listeners and waits for the open connections to end
// by themselves until ctx is done, then closes them. It returns ctx's error
// if some were cut.
func (s *SOCKS5Server) Shutdown(ctx context.Context) error {
	err := s.g.closeListeners()
	if werr := s.g.wait(ctx); werr != nil {
		err = errors.Join(err, werr)
	}
	return errors.Join(err, s.g.close())
}

func (s *SOCKS5Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// serveConn runs one SOCKS5 connection: the handshake, then the command.
func (s *SOCKS5Server) serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(orDefault(s.HandshakeTimeout, 10*time.Second)))
	req, err := s.handshake(c)
	if err != nil {
		if !errors.Is(err, errTruncated) {
			s.logger().Debug("socks5: bad request", "error", err)
		}
		lingerClose(c)
		return
	}
	// The handshake is over; the dial has a timeout of its own.
	c.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(s.g.context(), orDefault(s.DialTimeout, 30*time.Second))
	defer cancel()
	switch req.cmd {
	case cmdConnect:
		s.connect(ctx, c, req.addr)
	case cmdUDPAssociate:
		s.associate(c, req.addr)
	}
}

// handshake negotiates the method and reads the request. A request it
// refuses is answered before it returns the error.
func (s *SOCKS5Server) handshake(c net.Conn) (socksRequest, error) {
	version, noAuth, err := readGreeting(c)
	if err != nil {
		switch {
		case version == 4:
			// A SOCKS4 client: tell it "rejected" in its own protocol.
			c.Write([]byte{0, 0x5B, 0, 0, 0, 0, 0, 0})
		case version == socksVersion:
			c.Write([]byte{socksVersion, methodNoAcceptable})
		}
		return socksRequest{}, err
	}
	if !noAuth {
		c.Write([]byte{socksVersion, methodNoAcceptable})
		return socksRequest{}, errors.New("socks5: the client offers no method without authentication")
	}
	if _, err := c.Write([]byte{socksVersion, methodNoAuth}); err != nil {
		return socksRequest{}, err
	}
	req, err := readRequest(c)
	var se *socksError
	if errors.As(err, &se) {
		writeReply(c, se.reply, socksAddr{})
	}
	return req, err
}

// writeReply writes a reply with the bound address bnd (the unspecified
// IPv4 address if zero).
func writeReply(c net.Conn, rep byte, bnd socksAddr) error {
	if !bnd.ip.IsValid() && bnd.name == "" {
		bnd.ip = netip.IPv4Unspecified()
	}
	var buf [3 + maxAddrLen]byte
	_, err := c.Write(appendReply(buf[:0], rep, bnd))
	return err
}

// connect opens a TCP tunnel to target and splices it to c.
func (s *SOCKS5Server) connect(ctx context.Context, c net.Conn, target socksAddr) {
	t, err := s.Tunneler.DialTCP(ctx, target.String())
	if err != nil {
		rep := socksReply(err)
		logFailure(s.logger(), s.LogTargets, "socks5: tunnel failed", target.String(), err, "reply", rep)
		writeReply(c, rep, socksAddr{})
		return
	}
	defer t.Close()
	if !s.g.track(t) {
		return
	}
	defer s.g.untrack(t)
	if err := writeReply(c, replySucceeded, socksAddr{}); err != nil {
		return
	}
	splice(c, t)
}

// lingerClose ends a refused connection gracefully: it sends FIN, then reads
// and discards what the client still sends, for a short while, so that
// closing with unread data does not reset the connection and destroy the
// reply before the client has read it.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c, 64<<10)
}

// discardUntilClosed reads c until its end: the control connection of a UDP
// association carries nothing, and its end ends the association.
func discardUntilClosed(c net.Conn) { io.Copy(io.Discard, c) }
