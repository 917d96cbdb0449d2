// Package h2proxy is masqued's TLS+TCP front, for networks that block UDP:
// HTTP/2 and HTTP/1.1 on the same port number as HTTP/3. It serves CONNECT
// (TCP tunnels) on both, CONNECT-UDP as HTTP/2 extended CONNECT (RFC 8441)
// or HTTP/1.1 Upgrade with DATAGRAM capsules on the stream (RFC 9298 §3,
// RFC 9297 §3.5), forwards plain http:// requests as an HTTP proxy does, and
// advertises HTTP/3 with Alt-Svc. Its client side is package client/h2.
//
// The front only adapts: it turns an HTTP/2 stream or a hijacked HTTP/1.1
// connection into a tunnel.Stream. Parsing, policy, authentication, dialing
// and relaying live in tunnel, shared with h3proxy.
//
// CONNECT-UDP over HTTP/2 needs net/http started with GODEBUG=http2xconnect=1:
// start the program with it in the environment (masqued's own commands call
// internal/xconnect's Enable at the top of main, which re-executes them with
// it). Serve refuses to start without it.
package h2proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/internal/xconnect"
	"github.com/masqued/masqued/iptunnel"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// Server serves tunnels over HTTP/2 and HTTP/1.1 on TLS. Set the fields, then
// call Serve; do not change them afterwards. Like http.Server it serves on a
// listener the caller owns; Close stops at once, Shutdown drains.
type Server struct {
	// Proxy is the tunnel core. Required.
	Proxy *tunnel.Proxy
	// TLSConfig needs a certificate; NextProtos is set to h2 and http/1.1.
	TLSConfig *tls.Config
	// AltSvc is the Alt-Svc field value sent on every response of the
	// proxy's own (not on forwarded ones, which are the origin's), e.g.
	// `h3=":443"`, so that clients find the HTTP/3 front; "" sends none.
	AltSvc string
	// Handler serves requests addressed to the proxy itself that are not
	// tunnel requests (a geofeed, say); nil answers them 405.
	Handler http.Handler
	// Logger logs connection-level events; nil is silent.
	Logger *slog.Logger
	// HandshakeTimeout bounds the TLS handshake and a request's header;
	// 0 = 10 seconds.
	HandshakeTimeout time.Duration
	// MaxHeaderBytes bounds a request's header (431 past it); 0 = 16 KiB.
	MaxHeaderBytes int
	// IP serves CONNECT-IP (RFC 9484) over HTTP/2; nil refuses it.
	IP *iptunnel.Server

	conns    sync.Map // net.Conn → *connInfo, until net/http closes or hands it over
	initOnce sync.Once
	initErr  error
	srv      *http.Server
	fronts   fronts
	forward  *forwarder

	// Hijacked HTTP/1.1 tunnels, which http.Server forgets: Close closes
	// them, Shutdown waits for them.
	mu       sync.Mutex
	hijacked map[net.Conn]struct{}
	closed   bool
	tunnels  sync.WaitGroup
}

type connKey struct{}

// fronts are the core's views for the two protocols of the TCP front, so
// that metrics and the access log tell HTTP/2 from HTTP/1.1 tunnels.
type fronts struct{ h2, h1 *tunnel.Front }

// of returns the front that r arrived on.
func (f fronts) of(r *http.Request) *tunnel.Front {
	if r.ProtoMajor == 1 {
		return f.h1
	}
	return f.h2
}

// connInfo is what a request needs from its client connection.
type connInfo struct {
	state tunnel.ConnState

	// A connection is counted from its first request, the first moment its
	// protocol (ALPN) is known, until it closes.
	mu     sync.Mutex
	closed func() // nil until counted
	done   bool
}

// counted counts the connection as open on front, once, unless it has
// closed already.
func (ci *connInfo) counted(front *tunnel.Front) {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if ci.closed == nil && !ci.done {
		ci.closed = front.ConnOpened()
	}
}

// close counts the connection closed; it is safe to call more than once.
func (ci *connInfo) close() {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	ci.done = true
	if ci.closed != nil {
		ci.closed()
	}
}

// connOf returns r's connection, or an empty one (for tests that call
// ServeHTTP directly).
func connOf(r *http.Request) *connInfo {
	if ci, ok := r.Context().Value(connKey{}).(*connInfo); ok {
		return ci
	}
	return &connInfo{}
}

func (s *Server) init() error {
	s.initOnce.Do(func() { s.initErr = s.build() })
	return s.initErr
}

func (s *Server) build() error {
	if s.Proxy == nil {
		return errors.New("h2proxy: Server.Proxy is nil")
	}
	if err := xconnect.Check(); err != nil {
		return err
	}
	tlsConf := &tls.Config{}
	if s.TLSConfig != nil {
		tlsConf = s.TLSConfig.Clone()
	}
	tlsConf.NextProtos = []string{"h2", "http/1.1"}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.fronts = fronts{h2: s.Proxy.Front("h2"), h1: s.Proxy.Front("h1")}
	s.forward = newForwarder(s.fronts, s.Proxy.Limits())
	s.hijacked = make(map[net.Conn]struct{})
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         tlsConf,
		Protocols:         &protos,
		ReadHeaderTimeout: cmp.Or(s.HandshakeTimeout, 10*time.Second), // bounds the TLS handshake too
		IdleTimeout:       2 * time.Minute,                            // a connection without requests or tunnels
		MaxHeaderBytes:    cmp.Or(s.MaxHeaderBytes, 16<<10),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          maxConcurrentStreams,
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 16 << 20,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ci := &connInfo{}
			s.conns.Store(c, ci)
			return context.WithValue(ctx, connKey{}, ci)
		},
		ConnState: func(c net.Conn, state http.ConnState) {
			// A hijacked connection is counted until its tunnel ends
			// (serveHijacked); the others until net/http closes them.
			if state == http.StateClosed || state == http.StateHijacked {
				if ci, ok := s.conns.LoadAndDelete(c); ok && state == http.StateClosed {
					ci.(*connInfo).close()
				}
			}
		},
		ErrorLog: errorLog(s.Logger),
	}
	return nil
}

// maxConcurrentStreams bounds the streams of one HTTP/2 connection. It is not
// set to the core's per-connection tunnel limit: a client at that limit gets
// a 429 with Proxy-Status from the core, which says more than a stream limit
// (which some clients report only as an unusable connection).
const maxConcurrentStreams = 1000

// Serve accepts TLS connections on l until Close or Shutdown. Closing the
// server closes l, as http.Server does. It always returns a non-nil error,
// http.ErrServerClosed after Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.init(); err != nil {
		return err
	}
	return s.srv.ServeTLS(l, "", "")
}

// Close closes the listener and all connections at once, tunnels included.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.stopHijacked()
	err := s.srv.Close()
	s.tunnels.Wait()
	return err
}

// Shutdown stops accepting, waits for open tunnels to end until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	err := s.srv.Shutdown(ctx)
	// From here on track refuses: a handler that hijacked its connection
	// while net/http drained must not Add to tunnels while Wait runs (which
	// sync.WaitGroup forbids), nor start a tunnel Shutdown does not wait for.
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	hijacked := make(chan struct{})
	go func() { s.tunnels.Wait(); close(hijacked) }()
	select {
	case <-hijacked:
	case <-ctx.Done():
		s.stopHijacked()
		<-hijacked
	}
	if err != nil {
		s.srv.Close()
	}
	return err
}

// stopHijacked closes the hijacked tunnels' connections, and any that are
// hijacked from now on.
func (s *Server) stopHijacked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.hijacked {
		c.Close()
	}
}

// track registers a hijacked connection, or reports false if the server is
// closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.hijacked[c] = struct{}{}
	s.tunnels.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.hijacked, c)
	s.mu.Unlock()
	s.tunnels.Done()
}

// ServeHTTP handles one request: a tunnel, a forwarded http:// request, a
// request for the proxy itself, or an error answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	front := s.fronts.of(r)
	ci := connOf(r)
	ci.counted(front)
	protocol := tunnelProtocol(r)
	if r.Method != http.MethodConnect && protocol == "" && forwarded(r) {
		// Not ours to advertise on: the response is the origin's, and an
		// Alt-Svc on it would name the origin's alternatives.
		s.forward.serve(w, r)
		return
	}
	if s.AltSvc != "" {
		w.Header().Set("Alt-Svc", s.AltSvc)
	}
	if r.Method != http.MethodConnect && protocol == "" && s.Handler != nil {
		s.Handler.ServeHTTP(w, r)
		return
	}
	if protocol == iptunnel.Protocol && s.IP != nil && r.ProtoMajor == 2 {
		s.serveIP(w, r, front, ci)
		return
	}
	kind, target, err := front.ParseRequest(r, protocol)
	if err != nil {
		front.WriteError(w, err)
		return
	}
	t, err := front.Open(r.Context(), r, kind, target, &ci.state)
	if err != nil {
		front.WriteError(w, err)
		return
	}
	if r.ProtoMajor == 1 {
		s.serveHijacked(w, t, kind, ci)
		return
	}
	maps.Copy(w.Header(), t.Header())
	if kind == tunnel.KindUDP {
		w.Header().Set("Capsule-Protocol", "?1")
	}
	w.WriteHeader(http.StatusOK)
	client := newH2Stream(w, r)
	if err := client.flush(); err != nil {
		t.Close()
		return
	}
	_ = t.Relay(client, nil) // Relay logs how the tunnel ended
	if client.aborted() {
		// Reset the stream rather than end it cleanly, so that the client
		// does not take a failed tunnel for a finished one.
		panic(http.ErrAbortHandler)
	}
}

// serveHijacked answers an HTTP/1.1 tunnel request with 200 (CONNECT) or 101
// (Upgrade: connect-udp) and relays on the raw connection.
func (s *Server) serveHijacked(w http.ResponseWriter, t *tunnel.Tunnel, kind tunnel.Kind, ci *connInfo) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Close()
		s.fronts.h1.WriteError(w, &masque.Error{HTTPStatus: http.StatusInternalServerError,
			Kind: masque.StatusInternalError, Details: "cannot take over the connection", Err: err})
		return
	}
	defer conn.Close()
	defer ci.close()
	if !s.track(conn) {
		t.Close()
		return
	}
	defer s.untrack(conn)
	head := "HTTP/1.1 200 Connection established\r\n"
	if kind == tunnel.KindUDP {
		head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n"
	}
	var b strings.Builder
	b.WriteString(head)
	h := http.Header{}
	maps.Copy(h, t.Header())
	if s.AltSvc != "" {
		h.Set("Alt-Svc", s.AltSvc)
	}
	_ = h.Write(&b) // a strings.Builder does not fail
	b.WriteString("\r\n")
	_ = conn.SetDeadline(time.Time{}) // the server's header deadlines do not apply to the tunnel
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Close()
		return
	}
	_ = t.Relay(&h1Stream{Conn: conn, r: brw.Reader}, nil) // Relay logs how the tunnel ended
}

// tunnelProtocol returns the CONNECT-UDP-style protocol a request asks for:
// HTTP/2's :protocol pseudo-header, or HTTP/1.1's Upgrade token on a GET
// whose Connection field names upgrade; "" for neither.
func tunnelProtocol(r *http.Request) string {
	if r.ProtoMajor >= 2 {
		return r.Header.Get(":protocol")
	}
	if r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") {
		return strings.ToLower(strings.TrimSpace(r.Header.Get("Upgrade")))
	}
	return ""
}

// headerHasToken reports whether the comma-separated field name holds token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// errorLog routes http.Server's error log to l at debug level: TLS handshake
// failures from scanners are not worth more. nil l discards it.
func errorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(&slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(b []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(b)), "front", "h2")
	return len(b), nil
}
