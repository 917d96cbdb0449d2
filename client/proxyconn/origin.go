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
	w := &watchedConn{tunnel: pc}
	qt := &quic.Transport{Conn: w}
	// A tunnel in forwarded mode registers the client CIDs it generates.
	if u, ok := pc.(*UDPConn); ok && u.Forwarding() {
		qt.ConnectionIDGenerator = u.ConnectionIDGenerator()
	}
	target := pc.(interface{ RemoteAddr() net.Addr }).RemoteAddr()
	return &OriginTransport{
		qt: qt,
		Transport: &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig:      qc,
			Dial: func(ctx context.Context, addr string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				conn, err := qt.DialEarly(ctx, target, tlsConf, qc)
				// quic-go ends the connection with the error that ended
				// the transport's read of pc, wrapped.
				var refused *TargetRefusedError
				if errors.As(err, &refused) {
					return nil, refused
				}
				if err != nil && !w.answered.Load() {
					return nil, &SilentTargetError{Target: target.String(), Ended: w.ended.Load(), Err: err}
				}
				return conn, CheckCert(PeerOrigin, addr, err)
			},
		},
	}
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
