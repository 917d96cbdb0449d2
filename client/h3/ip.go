package h3

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/connectip"
)

// ipQueueLen is how many HTTP Datagrams a CONNECT-IP tunnel holds for its
// reader before it drops, as many as the QUIC connection's own queue.
const ipQueueLen = 128

// ConnectIP opens a CONNECT-IP tunnel (RFC 9484) with a request for reqURL
// (the CONNECT-IP template expanded: its path and query stay as encoded).
// It returns the request stream, on which the tunnel's capsules travel,
// and the tunnel's HTTP Datagrams, received through this Client's own
// dispatch rather than http3's 32-deep queue per stream. Over a connection
// without HTTP Datagrams it fails: IP packets need them over HTTP/3.
func (c *Client) ConnectIP(ctx context.Context, reqURL *url.URL) (*http3.RequestStream, *capsule.StreamDatagrams, error) {
	if !c.ctl.settings.extendedConnect || !c.datagrams {
		return nil, nil, errors.New("the proxy offers no extended CONNECT with HTTP Datagrams over HTTP/3")
	}
	var dg *capsule.StreamDatagrams
	rs, err := proxyconn.Do(ctx, c.auth, func(authz string) (*http3.RequestStream, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Proto:  connectip.Protocol,
			Host:   reqURL.Host,
			URL:    reqURL,
			Header: http.Header{http3.CapsuleProtocolHeader: {"?1"}},
		}
		proxyconn.SetRequestHeader(req, c.header, authz)
		rs, err := c.openStream(ctx)
		if err != nil {
			return nil, err
		}
		qsid := uint64(rs.StreamID() / 4)
		q := &ipDatagrams{in: make(chan []byte, ipQueueLen), conn: c.conn}
		c.ctl.register(qsid, q) // before the request: datagrams may beat the response
		if _, err := c.exchange(ctx, rs, req); err != nil {
			c.ctl.unregister(qsid)
			return nil, err
		}
		dg = &capsule.StreamDatagrams{QUICDatagrams: capsule.NewQUICDatagrams(c.conn, rs.StreamID()), Stream: q}
		return rs, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return rs, dg, nil
}

// RemoteAddr is the proxy's address, as the connection reaches it.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// ipDatagrams is a CONNECT-IP tunnel's queue of received HTTP Datagrams.
type ipDatagrams struct {
	in   chan []byte
	conn *quic.Conn
}

// Deliver queues b, or drops it when the reader is a full queue behind.
func (q *ipDatagrams) Deliver(b []byte) {
	select {
	case q.in <- b:
	default:
	}
}

// ReceiveDatagram returns the next datagram's payload, Context ID first.
func (q *ipDatagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case b := <-q.in:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.conn.Context().Done():
		return nil, context.Cause(q.conn.Context())
	}
}
