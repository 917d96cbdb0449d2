package proxyconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// OriginTransport speaks HTTP/3 to a UDP tunnel's target through the tunnel:
// QUIC inside the tunnel's packets, whichever transport carries them. It is
// an http.RoundTripper; every request goes to the tunnel's target, whatever
// the URL's host says (which still names the origin for TLS and
// :authority).
type OriginTransport struct {
	*http3.Transport
	qt *quic.Transport
}

// NewOriginTransport returns an OriginTransport over the UDP tunnel pc, whose
// RemoteAddr is the origin. tlsConf verifies the origin; qc configures the
// inner QUIC connection (nil for quic-go's defaults). Close the transport
// before pc.
//
// A failed connection to the origin is a *CertError when the origin's
// certificate did not verify, a *TargetRefusedError when the proxy ended the
// tunnel because the origin refused its packets, and a *SilentTargetError
// when nothing at all came back through the tunnel otherwise.
func NewOriginTransport(pc net.PacketConn, tlsConf *tls.Config, qc *quic.Config) *OriginTransport {
	tt := newTunnelTransport(pc)
	return &OriginTransport{
		qt: tt.qt,
		Transport: &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig:      qc,
			Dial: func(ctx context.Context, addr string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				conn, err := tt.dial(ctx, tlsConf, qc, true)
				var refused *TargetRefusedError
				var silent *SilentTargetError
				if errors.As(err, &refused) || errors.As(err, &silent) {
					return nil, err
				}
				return conn, CheckCert(PeerOrigin, addr, err)
			},
		},
	}
}

// DialQUIC connects over the UDP tunnel pc to its target, as quic.Dial
// does over a socket: for a connection to a proxy through another (an
// ingress relay), QUIC in the relay's tunnel. Close the returned transport,
// after the connection, to release pc; pc stays open. Errors are those of
// NewOriginTransport's connections, but for certificates, which the caller
// checks.
func DialQUIC(ctx context.Context, pc net.PacketConn, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Transport, error) {
	tt := newTunnelTransport(pc)
	conn, err := tt.dial(ctx, tlsConf, qc, false)
	if err != nil {
		tt.qt.Close()
		return nil, nil, err
	}
	return conn, tt.qt, nil
}

// tunnelTransport is a quic.Transport over a UDP tunnel to its target.
type tunnelTransport struct {
	qt     *quic.Transport
	w      *watchedConn
	target net.Addr
}

func newTunnelTransport(pc net.PacketConn) *tunnelTransport {
	w := &watchedConn{tunnel: pc}
	qt := &quic.Transport{Conn: w}
	// A tunnel in forwarded mode registers the client CIDs it generates.
	if u, ok := pc.(*UDPConn); ok && u.Forwarding() {
		qt.ConnectionIDGenerator = u.ConnectionIDGenerator()
	}
	return &tunnelTransport{qt: qt, w: w, target: pc.(interface{ RemoteAddr() net.Addr }).RemoteAddr()}
}

// dial connects to the tunnel's target, returning once the handshake is
// done or, if early, as soon as the connection may send. A failure is a *TargetRefusedError
// when the proxy ended the tunnel because the target refused its packets,
// a *SilentTargetError when nothing came back, or quic-go's error.
func (t *tunnelTransport) dial(ctx context.Context, tlsConf *tls.Config, qc *quic.Config, early bool) (*quic.Conn, error) {
	dial := t.qt.Dial
	if early {
		dial = t.qt.DialEarly
	}
	conn, err := dial(ctx, t.target, tlsConf, qc)
	// quic-go ends the connection with the error that ended the
	// transport's read of pc, wrapped.
	var refused *TargetRefusedError
	if errors.As(err, &refused) {
		return nil, refused
	}
	if err != nil && !t.w.answered.Load() {
		return nil, &SilentTargetError{Target: t.target.String(), Ended: t.w.ended.Load(), Err: err}
	}
	return conn, err
}

// Close closes the HTTP/3 connections and the QUIC transport; the tunnel
// stays open.
func (t *OriginTransport) Close() error {
	err := t.Transport.Close()
	if qerr := t.qt.Close(); qerr != nil && !errors.Is(qerr, net.ErrClosed) {
		err = errors.Join(err, qerr)
	}
	return err
}

// SilentTargetError reports a UDP tunnel's target that sent nothing back
// while QUIC tried to reach it: something listens on that UDP port without
// answering QUIC, or packets to it are lost, or nothing listens but no ICMP
// port unreachable reached the proxy (or the proxy does not report it:
// masqued ends the tunnel so that the client sees a *TargetRefusedError).
// After its 2xx a CONNECT stream carries no more HTTP fields, so no
// Proxy-Status can say more (RFC 9114 §4.4). Ended tells that the tunnel
// itself ended first.
type SilentTargetError struct {
	Target string // host:port
	Ended  bool
	Err    error
}

func (e *SilentTargetError) Error() string {
	why := "nothing came back through the tunnel"
	if e.Ended {
		why = "the proxy ended the tunnel before any packet came back"
	}
	return fmt.Sprintf("no answer from the target %s over UDP (%s): %v", e.Target, why, e.Err)
}

func (e *SilentTargetError) Unwrap() error { return e.Err }

// watchedConn is a UDP tunnel that notes whether a packet ever came back
// and whether the tunnel ended under its reader. The tunnel is no socket,
// so wrapping it costs quic-go no batched I/O.
type watchedConn struct {
	tunnel          net.PacketConn
	answered, ended atomic.Bool
}

func (w *watchedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := w.tunnel.ReadFrom(p)
	switch {
	case err == nil:
		w.answered.Store(true)
	case errors.Is(err, net.ErrClosed):
		w.ended.Store(true)
	}
	return n, addr, err
}

func (w *watchedConn) WriteTo(p []byte, addr net.Addr) (int, error) { return w.tunnel.WriteTo(p, addr) }
func (w *watchedConn) Close() error                                 { return w.tunnel.Close() }
func (w *watchedConn) LocalAddr() net.Addr                          { return w.tunnel.LocalAddr() }
func (w *watchedConn) SetDeadline(t time.Time) error                { return w.tunnel.SetDeadline(t) }
func (w *watchedConn) SetReadDeadline(t time.Time) error            { return w.tunnel.SetReadDeadline(t) }
func (w *watchedConn) SetWriteDeadline(t time.Time) error           { return w.tunnel.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer accept quic-go's socket-buffer tuning,
// which means nothing for a tunnel, so that quic-go does not warn about it.
func (w *watchedConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer: see SetReadBuffer.
func (w *watchedConn) SetWriteBuffer(int) error { return nil }
