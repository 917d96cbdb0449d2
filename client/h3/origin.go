package h3

import "github.com/masqued/masqued/client/proxyconn"

// OriginTransport speaks HTTP/3 to a UDP tunnel's target through the tunnel
// (UDPConn.HTTP3).
type OriginTransport = proxyconn.OriginTransport
