// Package h3 is the client side of MASQUE over HTTP/3: Dial connects to a
// proxy over QUIC and returns a Client, which opens TCP tunnels (DialTCP,
// CONNECT) and UDP tunnels (ListenUDP, CONNECT-UDP with QUIC DATAGRAM frames or
// DATAGRAM capsules) over that one connection.
//
// It lives apart from the proxy's HTTP/3 front (h3proxy) so that a client
// imports only the shared MASQUE vocabulary (masque, masque/capsule) and
// quic-go, never the server's tunnel core or its metrics.
package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/udpgso"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/quicproxy"
)

// Config configures a Client. The zero value trusts the system roots,
// uses the default CONNECT-UDP template and HTTP Datagrams where the proxy
// supports them.
type Config struct {
	// TLSConfig verifies the proxy. ServerName defaults to the proxy URL's
	// host; NextProtos is set to h3.
	TLSConfig *tls.Config
	// QUICConfig tunes the connection to the proxy; nil means
	// DefaultQUICConfig().
	QUICConfig *quic.Config
	// Template is the proxy's CONNECT-UDP URI template; "" means
	// masque.DefaultUDPTemplate. {proxy} expands to the proxy URL's host:port.
	Template string
	// DisableDatagrams makes UDP tunnels carry payloads in DATAGRAM capsules
	// on the request stream instead of QUIC DATAGRAM frames.
	DisableDatagrams bool
	// Authorizer supplies Proxy-Authorization for each tunnel request and
	// answers a 407 once; nil sends none.
	Authorizer masque.Authorizer
	// Header holds extra fields for every tunnel request, such as a
	// Sec-CH-Geohash location hint. Fields the client sets itself win.
	Header http.Header
	// Forwarding offers QUIC-aware forwarded mode
	// (draft-ietf-masque-quic-proxy, scramble transform) in every UDP
	// tunnel request, when HTTP Datagrams are in use. Where the proxy
	// accepts it (masqued on its -forward-listen port), a QUIC connection
	// run over the tunnel with NewOriginTransport or UDPConn.HTTP3 sends
	// and receives its short-header packets outside the connection to the
	// proxy once their connection IDs are registered; elsewhere the tunnel
	// is a plain RFC 9298 one. UDPConn.Forwarding tells which,
	// UDPConn.Forwarded counts the forwarded packets, and
	// Client.ForwardUnrouted the ones dropped for an unknown VCID. The
	// connection to the proxy then runs on a socket of the client's own,
	// read one packet at a time. It is ignored with PacketConn.
	Forwarding bool
	// PacketConn, when set, carries the connection to the proxy instead of
	// a socket of the client's own: a UDP tunnel to the proxy's address
	// through an ingress relay (client.Dialer.Relay), so that the relay
	// sees the proxy and never the tunnels' targets, and the proxy sees
	// the relay and never the client. The Client owns it: Close, or a
	// failed Dial, closes it.
	PacketConn net.PacketConn
}

// DefaultQUICConfig is the client's QUIC configuration unless one is
// given. Its first packets are large enough that a tunnelled QUIC connection's
// 1280-byte packets fit into DATAGRAM frames from the start, and keep-alives
// hold idle tunnels open.
func DefaultQUICConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:                true,
		InitialPacketSize:              1350,
		KeepAlivePeriod:                20 * time.Second,
		MaxIdleTimeout:                 60 * time.Second,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}

// RelayQUICConfig is DefaultQUICConfig for the connection to an ingress
// relay, which carries the connection to the egress proxy in its datagrams:
// its packets start at masque.RelayPacketSize.
func RelayQUICConfig() *quic.Config {
	qc := DefaultQUICConfig()
	qc.InitialPacketSize = masque.RelayPacketSize
	return qc
}

// Client opens tunnels through a MASQUE proxy, many over one HTTP/3
// connection. It is safe for concurrent use.
type Client struct {
	conn      *quic.Conn
	cc        *http3.RawClientConn
	ctl       *control
	tr        *http3.Transport
	authority string // the proxy's host:port
	template  *masque.Template
	auth      masque.Authorizer
	header    http.Header     // Config.Header
	datagrams bool            // both sides negotiated HTTP Datagrams
	qt        *quic.Transport // conn's transport, ours to close
	fwd       *forwardConn    // with Config.Forwarding: qt's socket
	sock      *udpgso.Conn    // without Forwarding or PacketConn: qt's socket
	relayed   net.PacketConn  // Config.PacketConn, closed after qt
}

// dialGathering connects to the proxy as quic.DialAddr does, but on a
// socket the client owns, under a udpgso.Conn: quic-go sends each HTTP
// Datagram in a write of its own, which the Conn gathers into runs. Close
// the transport, then the Conn, then its socket.
func dialGathering(ctx context.Context, authority string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Transport, *udpgso.Conn, error) {
	udp, proxy, err := listenFor(authority)
	if err != nil {
		return nil, nil, nil, err
	}
	sock := udpgso.NewConn(udp)
	qt := &quic.Transport{Conn: sock}
	conn, err := qt.Dial(ctx, net.UDPAddrFromAddrPort(proxy), tlsConf, qc)
	if err != nil {
		qt.Close()
		sock.Close()
		udp.Close()
		return nil, nil, nil, err
	}
	return conn, qt, sock, nil
}

// listenFor opens a UDP socket for a connection to the proxy at authority
// ("host:port"), of the proxy's address family, so that the source of each
// packet read compares with the proxy's address as it is.
func listenFor(authority string) (*net.UDPConn, netip.AddrPort, error) {
	raddr, err := net.ResolveUDPAddr("udp", authority)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	proxy := raddr.AddrPort()
	proxy = netip.AddrPortFrom(proxy.Addr().Unmap(), proxy.Port())
	network := "udp6"
	if proxy.Addr().Is4() {
		network = "udp4"
	}
	udp, err := net.ListenUDP(network, nil)
	return udp, proxy, err
}

// ProxyError is a proxy's refusal of a tunnel: its status, Proxy-Status and
// challenges.
type ProxyError = proxyconn.ProxyError

// Dial connects to the proxy at proxyURL ("https://host:port") and waits for
// its HTTP/3 SETTINGS.
func Dial(ctx context.Context, proxyURL string, c Config) (*Client, error) {
	p, err := proxyconn.NewProxy(proxyURL, c.Template, c.TLSConfig, http3.NextProtoH3)
	if err != nil {
		if c.PacketConn != nil {
			c.PacketConn.Close()
		}
		return nil, err
	}
	qc := c.QUICConfig
	if qc == nil {
		qc = DefaultQUICConfig()
	}
	qc = qc.Clone()
	qc.EnableDatagrams = !c.DisableDatagrams
	var conn *quic.Conn
	var qt *quic.Transport
	var fwd *forwardConn
	var sock *udpgso.Conn
	switch {
	case c.PacketConn != nil:
		conn, qt, err = proxyconn.DialQUIC(ctx, c.PacketConn, p.TLS, qc)
	case c.Forwarding && !c.DisableDatagrams:
		conn, qt, fwd, err = dialForwarding(ctx, p.Authority, p.TLS, qc)
	default:
		conn, qt, sock, err = dialGathering(ctx, p.Authority, p.TLS, qc)
	}
	if err != nil {
		if c.PacketConn != nil {
			c.PacketConn.Close()
		}
		return nil, proxyconn.CheckCert(proxyconn.PeerProxy, proxyURL, fmt.Errorf("connecting to proxy: %w", err))
	}
	tr := &http3.Transport{EnableDatagrams: !c.DisableDatagrams}
	cc := tr.NewRawClientConn(conn)
	ctl := newControl(conn, cc)
	cl := &Client{conn: conn, cc: cc, ctl: ctl, tr: tr, authority: p.Authority, template: p.Template, auth: c.Authorizer, header: c.Header.Clone(), qt: qt, fwd: fwd, sock: sock, relayed: c.PacketConn}
	select {
	case <-ctl.settingsRcvd:
	case <-ctx.Done():
		cl.Close()
		return nil, fmt.Errorf("waiting for proxy SETTINGS: %w", ctx.Err())
	case <-conn.Context().Done():
		cl.Close()
		return nil, fmt.Errorf("waiting for proxy SETTINGS: %w", context.Cause(conn.Context()))
	}
	cl.datagrams = !c.DisableDatagrams && ctl.settings.datagrams && conn.ConnectionState().SupportsDatagrams.Remote
	if cl.datagrams {
		ctl.wg.Add(1)
		go ctl.dispatchDatagrams()
	}
	return cl, nil
}

// Datagrams reports whether UDP tunnels use QUIC DATAGRAM frames (true) or
// DATAGRAM capsules on the stream (false).
func (c *Client) Datagrams() bool { return c.datagrams }

// Usable reports whether new tunnels can be opened on c: its connection is
// up and the proxy has not sent GOAWAY.
func (c *Client) Usable() bool { return c.conn.Context().Err() == nil && !c.ctl.goAway.Load() }

// Close closes the connection to the proxy and with it every tunnel.
func (c *Client) Close() error {
	err := errors.Join(c.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), ""), c.tr.Close())
	c.ctl.wg.Wait()
	if c.qt != nil {
		err = errors.Join(err, c.qt.Close())
	}
	if c.fwd != nil {
		err = errors.Join(err, c.fwd.Close())
	}
	if c.sock != nil {
		err = errors.Join(err, c.sock.Close(), c.sock.UDPConn.Close())
	}
	if c.relayed != nil {
		err = errors.Join(err, c.relayed.Close())
	}
	return err
}

// ErrGoAway reports a tunnel not opened because the proxy is going away (it
// sent GOAWAY): open a new Client.
var ErrGoAway = errors.New("proxy sent GOAWAY: open a new connection")

// roundTrip opens a request stream, sends req and reads the response; a non-2xx
// answer becomes a *ProxyError.
func (c *Client) roundTrip(ctx context.Context, req *http.Request) (*http3.RequestStream, error) {
	rs, err := c.openStream(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.exchange(ctx, rs, req); err != nil {
		return nil, err
	}
	return rs, nil
}

func (c *Client) openStream(ctx context.Context) (*http3.RequestStream, error) {
	if c.ctl.goAway.Load() {
		return nil, ErrGoAway
	}
	rs, err := c.cc.OpenRequestStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening request stream: %w", err)
	}
	return rs, nil
}

// exchange sends req on rs and reads the response, returning its header;
// on failure it resets rs.
func (c *Client) exchange(ctx context.Context, rs *http3.RequestStream, req *http.Request) (http.Header, error) {
	resetWith := func(err error) (http.Header, error) { return nil, resetStream(rs, err) }
	if err := rs.SendRequestHeader(req.WithContext(ctx)); err != nil {
		return resetWith(fmt.Errorf("sending request: %w", err))
	}
	// ReadResponse has no context: let ctx's end unblock it.
	stop := context.AfterFunc(ctx, func() { rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled)) })
	resp, err := rs.ReadResponse()
	if !stop() && err != nil {
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		return resetWith(fmt.Errorf("reading response: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resetWith(proxyconn.Refusal(resp))
	}
	return resp.Header, nil
}

// resetStream resets both directions of rs, a request that failed with err,
// and returns err.
func resetStream(rs *http3.RequestStream, err error) error {
	rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	rs.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	return err
}

// DialTCP opens a TCP tunnel to target ("host:port") with CONNECT.
// Closing the returned conn ends the tunnel; CloseWrite half-closes it.
func (c *Client) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	rs, err := proxyconn.Do(ctx, c.auth, func(authz string) (*http3.RequestStream, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Host:   target,
			URL:    &url.URL{Host: target},
			Header: http.Header{},
		}
		proxyconn.SetRequestHeader(req, c.header, authz)
		return c.roundTrip(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	c.ctl.opened()
	return &tcpConn{rs: rs, send: sendSide{rs: rs}, ctl: c.ctl, local: c.conn.LocalAddr(), remote: proxyconn.AddrOf(target, "tcp")}, nil
}

// ListenUDP opens a UDP tunnel to target ("host:port") with CONNECT-UDP. The
// returned PacketConn sends every packet to target and receives only from it;
// quic.Transport can run over it, so HTTP/3 to an origin works through it.
func (c *Client) ListenUDP(ctx context.Context, target string) (*UDPConn, error) {
	if !c.ctl.settings.extendedConnect {
		return nil, errors.New("the proxy does not offer extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL), so no CONNECT-UDP")
	}
	reqURL, err := proxyconn.ExpandUDP(c.template, c.authority, target)
	if err != nil {
		return nil, err
	}
	u, err := proxyconn.Do(ctx, c.auth, func(authz string) (*UDPConn, error) {
		req := &http.Request{
			Method: http.MethodConnect,
			Proto:  masque.ProtocolConnectUDP,
			Host:   reqURL.Host,
			URL:    reqURL,
			Header: http.Header{http3.CapsuleProtocolHeader: {"?1"}},
		}
		var key []byte // the client's scramble key, when it offers forwarded mode
		if c.fwd != nil && c.datagrams {
			var offer string
			offer, key = forwardingOffer()
			req.Header.Set(quicproxy.HeaderForwarding, offer)
		}
		proxyconn.SetRequestHeader(req, c.header, authz)
		rs, err := c.openStream(ctx)
		if err != nil {
			return nil, err
		}
		str := &udpStream{rs: rs, send: sendSide{rs: rs}, ctl: c.ctl, qsid: uint64(rs.StreamID() / 4)}
		var dg proxyconn.Datagrams // nil: capsules on the stream carry the packets
		if c.datagrams {
			qd := capsule.NewQUICDatagrams(c.conn, rs.StreamID())
			dg = &qd
		}
		u := proxyconn.NewUDPConn(str, dg, c.conn.LocalAddr(), proxyconn.AddrOf(target, "udp"))
		if c.datagrams {
			// Registered before the request goes out: datagrams may follow
			// the response faster than ReadResponse returns.
			c.ctl.register(str.qsid, u)
		}
		h, err := c.exchange(ctx, rs, req)
		var fw *proxyconn.Forwarding
		if err == nil && key != nil {
			if fw, err = c.acceptForwarding(h, key); err != nil {
				err = resetStream(rs, err)
			}
		}
		if err != nil {
			c.ctl.unregister(str.qsid)
			return nil, err
		}
		if fw != nil {
			u.EnableForwarding(*fw)
		}
		return u, nil
	})
	if err != nil {
		return nil, err
	}
	c.ctl.opened()
	u.Start()
	return u, nil
}

// tcpConn is a TCP tunnel: a net.Conn on an HTTP/3 request stream. Like a
// net.TCPConn, it may be closed while another goroutine writes.
type tcpConn struct {
	rs            *http3.RequestStream
	send          sendSide
	ctl           *control
	closeOnce     sync.Once
	local, remote net.Addr
}

func (c *tcpConn) Read(b []byte) (int, error)         { return c.rs.Read(b) }
func (c *tcpConn) Write(b []byte) (int, error)        { return c.send.write(b) }
func (c *tcpConn) CloseWrite() error                  { return c.send.close() }
func (c *tcpConn) LocalAddr() net.Addr                { return c.local }
func (c *tcpConn) RemoteAddr() net.Addr               { return c.remote }
func (c *tcpConn) SetDeadline(t time.Time) error      { return c.rs.SetDeadline(t) }
func (c *tcpConn) SetReadDeadline(t time.Time) error  { return c.rs.SetReadDeadline(t) }
func (c *tcpConn) SetWriteDeadline(t time.Time) error { return c.rs.SetWriteDeadline(t) }

// Close sends FIN after any queued data and stops reading.
func (c *tcpConn) Close() error {
	err := c.send.close()
	c.rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	c.closeOnce.Do(c.ctl.closed)
	return err
}
