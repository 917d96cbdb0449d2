package h3proxy

import (
	"crypto/tls"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/internal/proxyclient"
)

// OriginTransport speaks HTTP/3 to a UDP tunnel's target through the tunnel.
type OriginTransport = proxyclient.OriginTransport

// HTTP3 returns an OriginTransport over u. tlsConf verifies the origin; qc
// configures the inner QUIC connection (nil for quic-go's defaults). Close
// the transport before u.
func (u *UDPConn) HTTP3(tlsConf *tls.Config, qc *quic.Config) *OriginTransport {
	return proxyclient.NewOriginTransport(u, tlsConf, qc)
}
