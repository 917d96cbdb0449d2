package h3

import "github.com/masqued/masqued/internal/proxyclient"

// OriginTransport speaks HTTP/3 to a UDP tunnel's target through the tunnel
// (UDPConn.HTTP3).
type OriginTransport = proxyclient.OriginTransport
