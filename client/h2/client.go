// Package h2 is the client side of MASQUE over TLS+TCP, for networks that
// block UDP: Dial connects to a proxy with HTTP/2 (or HTTP/1.1 where the proxy
// offers only that) and returns a Client, which opens TCP tunnels (DialTCP,
// CONNECT) and UDP tunnels (ListenUDP, CONNECT-UDP with DATAGRAM capsules on
// the stream) over it.
//
// It lives apart from the proxy's TLS+TCP front (h2proxy) so that a client
// imports only the shared MASQUE vocabulary, never the server's tunnel core
// or its metrics.
package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"

	"golang.org/x/net/http2"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque"
)

// Config configures a Client. The zero value trusts the system roots,
// uses the default CONNECT-UDP template and prefers HTTP/2.
type Config struct {
	// TLSConfig verifies the proxy. ServerName defaults to the proxy URL's
	// host; NextProtos is set by the client.
	TLSConfig *tls.Config
	// Template is the proxy's CONNECT-UDP URI template; "" means
	// masque.DefaultUDPTemplate. {proxy} expands to the proxy's host:port.
	Template string
	// Authorizer supplies Proxy-Authorization for each tunnel request and
	// answers a 407 once; nil sends none.
	Authorizer masque.Authorizer
	// Header holds extra fields for every tunnel request, such as a
	// Sec-CH-Geohash location hint. Fields the client sets itself win.
	Header http.Header
	// HTTP1 makes every tunnel its own TLS connection with HTTP/1.1 CONNECT
	// or Upgrade, for proxies and middleboxes without HTTP/2. Without it
	// the client uses HTTP/2 streams on one connection, and HTTP/1.1 only
	// if the proxy does not offer h2.
	HTTP1 bool
	// DialContext, when set, makes the TCP connections to the proxy that
	// TLS runs over: CONNECT tunnels to the proxy's address through an
	// ingress relay (client.Dialer.Relay), TLS in TLS. nil dials directly.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client opens tunnels through a proxy over TLS+TCP: many as streams of one
// HTTP/2 connection, or one HTTP/1.1 connection each. It is safe for
// concurrent use.
type Client struct {
	authority string // the proxy's host:port
	proxyURL  string // as the caller gave it, for errors
	tlsConf   *tls.Config
	template  *masque.Template
	auth      masque.Authorizer
	header    http.Header // Config.Header
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	//lint:ignore SA1019 http.Transport.NewClientConn dials for itself; we need
	// the TLS connection we dialled, to fall back to HTTP/1.1 on it when the
	// proxy picks http/1.1 in ALPN.
	cc   *http2.ClientConn // nil on HTTP/1.1
	conn net.Conn          // the HTTP/2 connection

	mu        sync.Mutex
	firstConn net.Conn // HTTP/1.1: the connection Dial made, until the first tunnel takes it
}

// Dial connects to the proxy at proxyURL ("https://host:port") over TLS and
// returns a Client once the handshake is done.
func Dial(ctx context.Context, proxyURL string, c Config) (*Client, error) {
	protos := []string{"h2", "http/1.1"}
	if c.HTTP1 {
		protos = []string{"http/1.1"}
	}
	p, err := proxyconn.NewProxy(proxyURL, c.Template, c.TLSConfig, protos...)
	if err != nil {
		return nil, err
	}
	cl := &Client{authority: p.Authority, proxyURL: proxyURL, tlsConf: p.TLS, template: p.Template, auth: c.Authorizer, header: c.Header.Clone(), dial: c.DialContext}
	conn, err := cl.dialTLS(ctx)
	if err != nil {
		return nil, err
	}
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		cl.firstConn = conn
		return cl, nil
	}
	cl.conn = conn
	cl.cc, err = (&http2.Transport{MaxReadFrameSize: 1 << 20}).NewClientConn(conn) //lint:ignore SA1019 see Client.cc
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting HTTP/2 with the proxy: %w", err)
	}
	return cl, nil
}

func (c *Client) dialTLS(ctx context.Context) (*tls.Conn, error) {
	dial := c.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	raw, err := dial(ctx, "tcp", c.authority)
	var conn *tls.Conn
	if err == nil {
		conn = tls.Client(raw, c.tlsConf) // NewProxy has set ServerName
		if err = conn.HandshakeContext(ctx); err != nil {
			raw.Close()
		}
	}
	if err != nil {
		return nil, proxyconn.CheckCert(proxyconn.PeerProxy, c.proxyURL, fmt.Errorf("connecting to proxy: %w", err))
	}
	return conn, nil
}

// Protocol returns "h2" or "http/1.1": what the tunnels run on.
func (c *Client) Protocol() string {
	if c.cc != nil {
		return "h2"
	}
	return "http/1.1"
}

// Datagrams reports false: over TLS+TCP, DATAGRAM capsules on the stream
// carry UDP tunnels' packets, never QUIC DATAGRAM frames.
func (c *Client) Datagrams() bool { return false }

// Usable reports whether new tunnels can be opened on c: over HTTP/2, its
// connection is up and not going away; over HTTP/1.1 every tunnel dials its
// own connection, so always.
func (c *Client) Usable() bool { return c.cc == nil || c.cc.CanTakeNewRequest() }

// Close closes the connection to the proxy and with it every HTTP/2 tunnel.
// HTTP/1.1 tunnels have their own connections, closed with them.
func (c *Client) Close() error {
	c.mu.Lock()
	firstConn := c.firstConn
	c.firstConn = nil
	c.mu.Unlock()
	var errs []error
	if firstConn != nil {
		errs = append(errs, firstConn.Close())
	}
	if c.cc != nil {
		errs = append(errs, c.cc.Close()) // closes c.conn
	}
	return errors.Join(errs...)
}

// DialTCP opens a TCP tunnel to target ("host:port") with CONNECT. Closing
// the returned conn ends the tunnel; CloseWrite half-closes it. Deadlines
// work on HTTP/1.1 tunnels only.
func (c *Client) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	if err := proxyconn.CheckTCPTarget(target); err != nil {
		return nil, err
	}
	return proxyconn.Do(ctx, c.auth, func(authz string) (net.Conn, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Host:   target,
			URL:    &url.URL{Host: target},
			Header: http.Header{},
		}
		s, err := c.open(ctx, req, authz)
		if err != nil {
			return nil, err
		}
		return &tcpConn{stream: s, remote: proxyconn.AddrOf(target, "tcp")}, nil
	})
}

// ListenUDP opens a UDP tunnel to target ("host:port") with CONNECT-UDP,
// DATAGRAM capsules on the stream carrying the packets.
func (c *Client) ListenUDP(ctx context.Context, target string) (*UDPConn, error) {
	reqURL, err := proxyconn.ExpandUDP(c.template, c.authority, target)
	if err != nil {
		return nil, err
	}
	return proxyconn.Do(ctx, c.auth, func(authz string) (*UDPConn, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Host:   reqURL.Host,
			URL:    reqURL,
			Header: http.Header{"Capsule-Protocol": {"?1"}},
		}
		if c.cc != nil {
			req.Header.Set(":protocol", masque.ProtocolConnectUDP)
		} else {
			req.Method = http.MethodGet
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", masque.ProtocolConnectUDP)
		}
		s, err := c.open(ctx, req, authz)
		if err != nil {
			return nil, err
		}
		u := proxyconn.NewUDPConn(udpStream{s}, nil, s.local, proxyconn.AddrOf(target, "udp"))
		u.Start()
		return u, nil
	})
}

// stream is an established tunnel's client side.
type stream struct {
	io.Reader // the proxy's bytes
	w         io.Writer
	closeW    func() error // ends our side cleanly
	closeBoth func() error // ends both sides at once
	local     net.Addr
	conn      net.Conn // HTTP/1.1 only, for deadlines
}

// open sends req and returns the tunnel once the proxy accepts it.
func (c *Client) open(ctx context.Context, req *http.Request, authz string) (*stream, error) {
	proxyconn.SetRequestHeader(req, c.header, authz)
	if c.cc != nil {
		return c.openH2(ctx, req)
	}
	return c.openH1(ctx, req)
}

func (c *Client) openH2(ctx context.Context, req *http.Request) (*stream, error) {
	req.URL.Scheme = "https"
	req.URL.Host = c.authority
	pr, pw := io.Pipe()
	req.Body = pr
	req.ContentLength = -1
	// The tunnel outlives ctx, which bounds only its opening.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	resp, err := c.cc.RoundTrip(req.WithContext(life))
	if !stop() {
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		cancel()
		pw.Close()
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("tunnel request: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		cancel()
		pw.Close()
		resp.Body.Close()
		return nil, proxyconn.Refusal(resp)
	}
	return &stream{
		Reader: resp.Body,
		w:      pw,
		closeW: pw.Close,
		closeBoth: func() error {
			pw.CloseWithError(net.ErrClosed)
			cancel() // resets the stream
			return resp.Body.Close()
		},
		local: c.conn.LocalAddr(),
	}, nil
}

func (c *Client) openH1(ctx context.Context, req *http.Request) (*stream, error) {
	c.mu.Lock()
	conn := c.firstConn
	c.firstConn = nil
	c.mu.Unlock()
	if conn == nil {
		tc, err := c.dialTLS(ctx)
		if err != nil {
			return nil, err
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	br := bufio.NewReader(conn)
	resp, err := roundTripH1(conn, br, req)
	if !stop() {
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel request: %w", err)
	}
	want := http.StatusOK
	if req.Method == http.MethodGet {
		want = http.StatusSwitchingProtocols
	}
	if resp.StatusCode != want && !(want == http.StatusOK && resp.StatusCode/100 == 2) {
		conn.Close()
		return nil, proxyconn.Refusal(resp)
	}
	return &stream{
		Reader:    br,
		w:         conn,
		closeW:    conn.(*tls.Conn).CloseWrite,
		closeBoth: conn.Close,
		local:     conn.LocalAddr(),
		conn:      conn,
	}, nil
}

// roundTripH1 writes req on conn and reads the response head; the body, if
// any, is left unread (a refusal's body is not needed).
func roundTripH1(conn net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	req.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery, Host: req.URL.Host}
	var err error
	if req.Method == http.MethodConnect {
		_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", req.Host, req.Host)
	} else {
		_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n", req.URL.RequestURI(), req.Host)
	}
	if err == nil {
		err = req.Header.Write(conn)
	}
	if err == nil {
		_, err = io.WriteString(conn, "\r\n")
	}
	if err != nil {
		return nil, err
	}
	return http.ReadResponse(br, req)
}
