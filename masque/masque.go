// Package masque is the MASQUE vocabulary that a proxy and its clients share:
// where a tunnel goes (Target, from a CONNECT authority or a CONNECT-UDP URI
// Template), the protocol tokens that ask for a tunnel, the RFC 9209
// Proxy-Status error kinds and the Error that carries them, and the limits and
// sentinel errors both ends of a UDP tunnel agree on. Package masque/capsule
// frames HTTP Datagrams and capsules.
//
// It exists so that a client can speak MASQUE without importing the server:
// it imports only the standard library and a URI-template parser, and the
// proxy's tunnel core uses these types as they are.
//
// What is stable: the names and values that come from the RFCs (the protocol
// tokens, the Status kinds, DefaultUDPTemplate, MaxUDPPayload), what
// ParseAuthority, NewTarget and ParseTemplate accept, the mapping StatusOf
// makes from a cause to an HTTP status and kind, and the form of ProxyStatus.
// The Details of an Error are for people and may change: compare errors with
// errors.Is or by Kind, never by their text.
package masque

import (
	"context"
	"errors"
	"net/http"
	"syscall"
)

// Protocol tokens: the :protocol of an extended CONNECT (HTTP/2, HTTP/3) and
// the Upgrade token of an HTTP/1.1 request that ask for a tunnel.
const (
	ProtocolConnectUDP = "connect-udp" // RFC 9298
	ProtocolConnectIP  = "connect-ip"  // RFC 9484
)

// RelayRefusal is the Proxy-Status details of an ingress relay's 403 for a
// target that is not one of its egress proxies, for clients to say what to
// do about it.
const RelayRefusal = "this proxy is a relay: it tunnels only to its egress proxies"

// RelayPacketSize is the size of the first QUIC packets on a connection to
// or from an ingress relay of a two-hop chain, both ways. Its DATAGRAM frames
// must carry the packets of the QUIC connection to the egress proxy whole,
// and those start at 1350 bytes (the size clients and masqued start at, so
// that a tunnelled QUIC connection's 1280-byte packets fit): 1350 bytes of
// payload, a context ID and a quarter stream ID, a DATAGRAM frame's type and
// length and a short header with its AEAD tag take under 1400. Smaller, the
// egress connection's first packets would be dropped at the relay until
// path MTU discovery had grown the relay's connection; 1400-byte packets
// still fit the 1500-byte MTU of most paths with room for tunnels.
const RelayPacketSize = 1400

// MaxUDPPayload is the largest payload a UDP packet can carry (RFC 768: a
// 16-bit length, less the 8-byte header), and so the most any side of a
// CONNECT-UDP tunnel relays in one datagram.
const MaxUDPPayload = 65527

// ErrDatagramTooLarge reports a datagram that a transport cannot carry, such
// as a QUIC DATAGRAM frame larger than the path allows. It is a drop, not a
// failure of the tunnel, on the proxy's side of a tunnel and on the client's
// alike.
var ErrDatagramTooLarge = errors.New("datagram too large for the transport")

// ErrTargetRefused ends a UDP tunnel whose target refused its packets (ICMP
// port unreachable, ECONNREFUSED on the connected socket) before it ever sent
// one back: most likely nothing listens on that port, and the client's
// protocol inside the tunnel would otherwise wait out its own timeout to
// learn it. After the 2xx no Proxy-Status can say so (RFC 9114 §4.4 allows
// only DATA frames on a CONNECT stream), so fronts tell the client by how
// the stream ends (the tunnel core's RefusedEnder); the access log and
// masqued_tunnel_errors_total record connection_refused.
//
// Once the target has sent anything back, a refusal is a counted write_error
// drop and the tunnel lives on: a target that restarts must not end a
// working tunnel, and a forged ICMP error can then end none. Compare with
// errors.Is; never modify it.
var ErrTargetRefused = &Error{HTTPStatus: http.StatusBadGateway, Kind: StatusConnectionRefused,
	Details: "the target answered with ICMP port unreachable", Err: syscall.ECONNREFUSED}

// Authorizer supplies Proxy-Authorization for a client's tunnel requests; a
// Privacy Pass token pool (privacypass.Client) is one. It is the client's
// side of the proxy's 407: any implementation works with any transport.
type Authorizer interface {
	// Authorize returns a Proxy-Authorization field value for the next
	// tunnel request, or "" for none. challenges holds the
	// Proxy-Authenticate field values of the 407 that answered the previous
	// attempt, or is nil before the first attempt.
	Authorize(ctx context.Context, challenges []string) (string, error)
}
