package proxyclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

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
func NewOriginTransport(pc net.PacketConn, tlsConf *tls.Config, qc *quic.Config) *OriginTransport {
	qt := &quic.Transport{Conn: pc}
	target := pc.(interface{ RemoteAddr() net.Addr }).RemoteAddr()
	return &OriginTransport{
		qt: qt,
		Transport: &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig:      qc,
			Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return qt.DialEarly(ctx, target, tlsConf, qc)
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
