package h2proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// h2Stream adapts an HTTP/2 request stream, after the 200, to
// tunnel.Stream: the request body carries the client's bytes, the response
// body ours.
//
// net/http cannot end the response while the handler still reads the
// request body: the stream ends when the handler returns. So CloseWrite
// (the target finished sending) also stops reading the client, whose later
// bytes would have nowhere to go but a half-closed target: the tunnel ends
// cleanly, as most HTTP/2 proxies end it. A tunnel whose client half-closes
// first keeps relaying the target's bytes to the end.
type h2Stream struct {
	w        http.ResponseWriter
	body     io.Reader
	rc       *http.ResponseController
	finished atomic.Bool // CloseWrite ran: reads end with io.EOF
	abort    atomic.Bool // Abort ran: the handler resets the stream
}

func newH2Stream(w http.ResponseWriter, r *http.Request) *h2Stream {
	return &h2Stream{w: w, body: r.Body, rc: http.NewResponseController(w)}
}

func (s *h2Stream) Read(b []byte) (int, error) {
	n, err := s.body.Read(b)
	if err != nil && s.finished.Load() && !s.abort.Load() {
		err = io.EOF
	}
	return n, err
}

// Write sends b at once: a tunnel cannot wait for a buffer to fill.
func (s *h2Stream) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	if err == nil {
		err = s.flush()
	}
	return n, err
}

func (s *h2Stream) flush() error { return s.rc.Flush() }

func (s *h2Stream) CloseWrite() error {
	s.finished.Store(true)
	return s.rc.SetReadDeadline(time.Now()) // unblocks the reader, which sees io.EOF
}

func (s *h2Stream) Abort() error {
	s.abort.Store(true)
	now := time.Now()
	return errors.Join(s.rc.SetReadDeadline(now), s.rc.SetWriteDeadline(now))
}

func (s *h2Stream) aborted() bool { return s.abort.Load() }

// EndRefused ends the stream cleanly (END_STREAM, the handler returning)
// while the client's side is still open, which the client reads as "the
// target refused" (masque.ErrTargetRefused). HTTP/2's CONNECT_ERROR would
// say it better, but net/http lets a handler reset a stream only with
// INTERNAL_ERROR (panic(http.ErrAbortHandler)), which every other failure
// uses; and the proxy never ends a UDP tunnel cleanly otherwise, since a
// UDP target has no end of stream. The relay has not written to a refused
// tunnel, so no Write runs concurrently.
func (s *h2Stream) EndRefused() error { return s.CloseWrite() }

// h1Stream adapts a hijacked HTTP/1.1 connection, after the 200 or 101, to
// tunnel.Stream. Reads go through the server's reader, which may hold bytes
// the client sent right behind its request.
type h1Stream struct {
	net.Conn
	r *bufio.Reader
}

func (s *h1Stream) Read(b []byte) (int, error) { return s.r.Read(b) }

// CloseWrite sends TLS close_notify: the client reads the end of the tunnel.
func (s *h1Stream) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (s *h1Stream) Abort() error { return s.Conn.Close() }

// EndRefused resets the TCP connection (RST, without TLS close_notify),
// which the client reads as "the target refused" (masque.ErrTargetRefused).
// Abort's close, with or without close_notify, reads as a plain end of
// stream in Go's TLS, as would the close of a proxy that goes away; a reset
// is the one ending HTTP/1.1 has left to tell apart.
func (s *h1Stream) EndRefused() error {
	c := s.Conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // close sends RST
	}
	return c.Close()
}
