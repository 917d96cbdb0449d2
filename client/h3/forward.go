package h3

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque/quicproxy"
)

// QUIC-aware forwarded mode (draft-ietf-masque-quic-proxy), the HTTP/3
// client's part: the connection to the proxy on a socket of the client's own
// (forwardConn), the offer in each CONNECT-UDP request and the reading of
// the proxy's answer. The registrations and the packets themselves are the
// UDPConn's (client/proxyconn).

// dialForwarding connects to the proxy at authority as quic.DialAddr does,
// but on a socket the client owns, wrapped in a forwardConn, under a
// transport whose CIDs never look like a client VCID. Close the transport,
// then the forwardConn.
func dialForwarding(ctx context.Context, authority string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Transport, *forwardConn, error) {
	udp, proxy, err := listenFor(authority)
	if err != nil {
		return nil, nil, nil, err
	}
	fc := newForwardConn(udp, proxy)
	qt := &quic.Transport{Conn: fc, ConnectionIDGenerator: proxyCIDs{}}
	conn, err := qt.Dial(ctx, fc.proxyAddr, tlsConf, qc)
	if err != nil {
		qt.Close()
		fc.Close()
		return nil, nil, nil, err
	}
	return conn, qt, fc, nil
}

// forwardingOffer returns a Proxy-QUIC-Forwarding value that offers forwarded
// mode with the scramble transform, and the new key it scrambles with.
func forwardingOffer() (string, []byte) {
	key := make([]byte, 32)
	rand.Read(key)
	offer := quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformScramble}, ScrambleKey: key}
	return offer.String(), key
}

// acceptForwarding reads the proxy's answer to forwardingOffer(key) in its
// 2xx response header h: the tunnel's Forwarding, or nil for a plain tunnel
// (no Proxy-QUIC-Forwarding, ?0, no transform, or a value that does not
// parse, which RFC 8941 has a recipient ignore, or no usable scramble key,
// with which the draft disables forwarded mode). A transform the client did
// not offer is an error: the draft has the client abort the request.
func (c *Client) acceptForwarding(h http.Header, key []byte) (*proxyconn.Forwarding, error) {
	v := h.Get(quicproxy.HeaderForwarding)
	if v == "" {
		return nil, nil
	}
	answer, err := quicproxy.ParseForwarding(v)
	if err != nil || !answer.Enabled || answer.Transform == "" {
		return nil, nil
	}
	if answer.Transform != quicproxy.TransformScramble {
		return nil, fmt.Errorf("the proxy chose the forwarding transform %q, which the client did not offer (%s)", answer.Transform, quicproxy.TransformScramble)
	}
	in, err := quicproxy.NewScrambler(answer.ScrambleKey)
	if err != nil {
		return nil, nil
	}
	out, err := quicproxy.NewScrambler(key)
	if err != nil {
		return nil, err
	}
	return &proxyconn.Forwarding{Socket: c.fwd, Scramble: out, Unscramble: in}, nil
}

// ForwardUnrouted counts the packets that arrived on the connection to the
// proxy looking forwarded (a short header whose DCID has its top bit set)
// but for no client VCID routed: dropped, never given to quic-go. Zero
// without Config.Forwarding.
func (c *Client) ForwardUnrouted() uint64 {
	if c.fwd == nil {
		return 0
	}
	return c.fwd.unrouted.Load()
}
