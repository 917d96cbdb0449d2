// Package h3proxy is masqued's HTTP/3 front: it serves CONNECT (TCP tunnels,
// RFC 9114 §4.4) and CONNECT-UDP (RFC 9298) over QUIC, adapting HTTP/3 request
// streams and QUIC DATAGRAM frames to the tunnel core. Its client side is
// package client/h3.
//
// The front only adapts: parsing, policy, dialing and relaying live in
// tunnel, shared with the HTTP/2 front.
package h3proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/udpgso"
	"github.com/masqued/masqued/iptunnel"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/tunnel"
)

// Server serves tunnels over HTTP/3. Set the fields, then call Serve; do not
// change them afterwards. Server has the shape of http3.Server: it serves on a
// net.PacketConn the caller owns, Close stops at once, Shutdown drains.
type Server struct {
	// Proxy is the tunnel core. Required.
	Proxy *tunnel.Proxy
	// TLSConfig needs a certificate; NextProtos is set to h3.
	TLSConfig *tls.Config
	// QUICConfig tunes QUIC; nil means DefaultQUICConfig(). Datagrams are
	// always enabled.
	QUICConfig *quic.Config
	// Logger logs connection-level events; nil is silent.
	Logger *slog.Logger
	// MaxHeaderBytes bounds a request's header; 0 = http3's default.
	MaxHeaderBytes int
	// IP serves CONNECT-IP (RFC 9484); nil refuses it.
	IP *iptunnel.Server

	initOnce sync.Once // builds h3 and front, from whichever method runs first
	initErr  error
	h3       *http3.Server
	front    *tunnel.Front
	forward  atomic.Pointer[tunnel.ForwardSocket] // set by Serve on one
}

// DefaultQUICConfig is the server's QUIC configuration unless one is given:
// room for many tunnels per connection and windows sized for relaying bulk
// transfers.
func DefaultQUICConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams: true,
		// Large enough from the first packet for a tunnelled QUIC
		// connection's 1280-byte packets to fit into DATAGRAM frames;
		// otherwise its handshake waits for path MTU discovery (~200 ms).
		InitialPacketSize:              1350,
		MaxIncomingStreams:             10000,
		MaxIdleTimeout:                 60 * time.Second,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}

// RelayQUICConfig is DefaultQUICConfig for an ingress relay (masqued
// -relay-to), whose datagrams carry its clients' QUIC connections to egress
// proxies: its packets start at masque.RelayPacketSize.
func RelayQUICConfig() *quic.Config {
	qc := DefaultQUICConfig()
	qc.InitialPacketSize = masque.RelayPacketSize
	return qc
}

type connKey struct{}

// connInfo is what a handler needs from its QUIC connection.
type connInfo struct {
	conn  *quic.Conn
	state tunnel.ConnState
}

// init builds the HTTP/3 server once. Close and Shutdown call it too, so that
// a Serve that starts after them returns http.ErrServerClosed at once.
func (s *Server) init() error {
	s.initOnce.Do(func() { s.initErr = s.build() })
	return s.initErr
}

func (s *Server) build() error {
	if s.Proxy == nil {
		return errors.New("h3proxy: Server.Proxy is nil")
	}
	qc := s.QUICConfig
	if qc == nil {
		qc = DefaultQUICConfig()
	}
	qc = qc.Clone()
	qc.EnableDatagrams = true
	s.front = s.Proxy.Front("h3")
	s.h3 = &http3.Server{
		TLSConfig:       http3.ConfigureTLSConfig(s.TLSConfig),
		QUICConfig:      qc,
		Handler:         s,
		EnableDatagrams: true,
		MaxHeaderBytes:  s.MaxHeaderBytes,
		Logger:          s.Logger,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			context.AfterFunc(c.Context(), s.front.ConnOpened())
			return context.WithValue(ctx, connKey{}, &connInfo{conn: c})
		},
	}
	return nil
}

// Serve serves HTTP/3 on pc until Close or Shutdown. Closing the server does
// not close pc. It always returns a non-nil error, http.ErrServerClosed after
// Close or Shutdown. On a *tunnel.ForwardSocket it also offers forwarded
// mode (draft-ietf-masque-quic-proxy) to the UDP tunnels of clients that ask
// for it.
func (s *Server) Serve(pc net.PacketConn) error {
	if err := s.init(); err != nil {
		return err
	}
	if fs, ok := pc.(*tunnel.ForwardSocket); ok {
		return s.serveForwarding(fs)
	}
	if uc, ok := pc.(*net.UDPConn); ok {
		// quic-go sends each HTTP Datagram in a sendmsg of its own: gather
		// them into GSO runs.
		gc := udpgso.NewConn(uc)
		defer gc.Close()
		pc = gc
	}
	return s.h3.Serve(pc)
}

// Close closes all connections at once.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	return s.h3.Close()
}

// Shutdown sends GOAWAY and waits for open tunnels to end until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	return s.h3.Shutdown(ctx)
}

// ServeHTTP handles one request: a tunnel request, or an error answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	protocol := ""
	if r.Method == http.MethodConnect && r.Proto != "HTTP/3.0" {
		protocol = r.Proto // quic-go puts :protocol here
	}
	if protocol == iptunnel.Protocol && s.IP != nil {
		s.serveIP(w, r)
		return
	}
	kind, target, err := s.front.ParseRequest(r, protocol)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	withDatagrams := false
	if kind == tunnel.KindUDP {
		if withDatagrams, err = s.negotiatedDatagrams(w, r, ci); err != nil {
			s.refuse(w, r, err)
			return
		}
	}
	var state *tunnel.ConnState
	if ci != nil {
		state = &ci.state
	}
	t, err := s.front.Open(r.Context(), r, kind, target, state)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	for k, vs := range t.Header() { // e.g. a Proxy-Status with details
		w.Header()[k] = vs
	}
	if kind == tunnel.KindUDP {
		w.Header().Set(http3.CapsuleProtocolHeader, "?1")
		if withDatagrams {
			s.negotiateForwarding(w, r, ci, t)
		}
	}
	w.WriteHeader(http.StatusOK)
	str, err := w.(http3.HTTPStreamer).HTTPStream()
	if err != nil {
		t.Close()
		return
	}
	var dc tunnel.DatagramConn // nil: capsules on the stream carry the payloads
	if withDatagrams {
		dc = &capsule.StreamDatagrams{QUICDatagrams: capsule.NewQUICDatagrams(ci.conn, str.StreamID()), Stream: str}
	}
	_ = t.Relay(&stream{str}, dc) // Relay logs how the tunnel ended
}

// negotiatedDatagrams reports whether a CONNECT-UDP request's payloads can
// travel as HTTP Datagrams: the client sent SETTINGS_H3_DATAGRAM and its QUIC
// connection supports datagrams. Otherwise capsules carry them.
func (s *Server) negotiatedDatagrams(w http.ResponseWriter, r *http.Request, ci *connInfo) (bool, error) {
	settings, ok := w.(http3.Settingser)
	if !ok || ci == nil {
		return false, nil
	}
	select {
	case <-settings.ReceivedSettings():
	case <-r.Context().Done():
		return false, r.Context().Err()
	case <-time.After(5 * time.Second):
		return false, &masque.Error{HTTPStatus: http.StatusBadRequest, Kind: masque.StatusHTTPRequestError,
			Details: "no HTTP/3 SETTINGS from the client"}
	}
	return settings.Settings().EnableDatagrams && ci.conn.ConnectionState().SupportsDatagrams.Remote, nil
}

// stream adapts an HTTP/3 request stream to tunnel.Stream.
type stream struct{ *http3.Stream }

func (s *stream) CloseWrite() error { return s.Stream.Close() }

func (s *stream) Abort() error { return s.reset(http3.ErrCodeRequestCanceled) }

// EndRefused resets the stream with H3_CONNECT_ERROR, which the client
// reads as "the target refused" (masque.ErrTargetRefused). RFC 9114 §8.1
// defines the code for a CONNECT whose TCP connection was reset or
// abnormally closed, the closest HTTP/3 has for a proxied UDP flow that the
// target refused; every other failure resets with H3_REQUEST_CANCELLED.
func (s *stream) EndRefused() error { return s.reset(http3.ErrCodeConnectError) }

// reset stops both directions of the stream with code.
func (s *stream) reset(code http3.ErrCode) error {
	s.CancelRead(quic.StreamErrorCode(code))
	s.CancelWrite(quic.StreamErrorCode(code))
	return nil
}
