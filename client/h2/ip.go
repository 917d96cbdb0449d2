package h2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque/connectip"
)

// IPStream is a CONNECT-IP tunnel's stream over HTTP/2: its capsules both
// ways, IP packets in DATAGRAM capsules among them (connectip.Stream).
type IPStream struct{ s *stream }

func (s IPStream) Read(b []byte) (int, error)  { return s.s.Read(b) }
func (s IPStream) Write(b []byte) (int, error) { return s.s.w.Write(b) }

// CloseWrite ends the client's side of the stream cleanly.
func (s IPStream) CloseWrite() error { return s.s.closeW() }

// Abort resets the stream, unblocking Read and Write.
func (s IPStream) Abort() error { return s.s.closeBoth() }

var _ connectip.Stream = IPStream{}

// ConnectIP opens a CONNECT-IP tunnel (RFC 9484) with an extended CONNECT
// for reqURL (the CONNECT-IP template expanded: its path and query stay as
// encoded). It needs HTTP/2: over HTTP/1.1 it fails.
func (c *Client) ConnectIP(ctx context.Context, reqURL *url.URL) (IPStream, error) {
	if c.cc == nil {
		return IPStream{}, errors.New("CONNECT-IP needs HTTP/2, and the proxy offers HTTP/1.1 only")
	}
	return proxyconn.Do(ctx, c.auth, func(authz string) (IPStream, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Host:   reqURL.Host,
			URL:    reqURL,
			Header: http.Header{"Capsule-Protocol": {"?1"}, ":protocol": {connectip.Protocol}},
		}
		s, err := c.open(ctx, req, authz)
		if err != nil {
			return IPStream{}, err
		}
		return IPStream{s}, nil
	})
}

// RemoteAddr is the proxy's address, as the HTTP/2 connection reaches it;
// nil over HTTP/1.1.
func (c *Client) RemoteAddr() net.Addr {
	if c.conn == nil {
		return nil
	}
	return c.conn.RemoteAddr()
}
