// Package vpn is masque-client's device-wide tunnel: one CONNECT-IP tunnel
// (RFC 9484) to the proxy over HTTP/3, or HTTP/2 where UDP is blocked, a TUN
// device with the addresses the proxy assigns, and routes through it, until
// the context ends or the proxy goes away; then the device, its routes and
// the pinned route to the proxy are removed.
package vpn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/net/http2"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/tun"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/connectip"
)

// Config says how to reach the proxy and what to route.
type Config struct {
	Proxy     string      // https://host:port
	TLSConfig *tls.Config // for the proxy; NextProtos is set
	// Path is the request's path and query: the CONNECT-IP template
	// expanded; "" = the default template, unscoped.
	Path       string
	Transport  string // "auto" (HTTP/3, else HTTP/2), "h3" or "h2"; "" = auto
	Authorizer masque.Authorizer
	Header     http.Header // extra request fields (Sec-CH-Geohash)
	Device     string      // TUN device name; "" = the kernel's choice
	// Routes go through the tunnel; nil: the routes the proxy advertises
	// (a default route as two halves, so that it wins over the host's).
	Routes []netip.Prefix
	Logf   func(format string, args ...any) // nil: silent
}

// DefaultPath is the default template's unscoped request.
const DefaultPath = "/.well-known/masque/ip/*/*/"

// Tunnel is an open CONNECT-IP tunnel to the proxy, before a device.
type Tunnel struct {
	*connectip.ClientConn
	Transport string
	Remote    netip.Addr // the proxy's address
	closeConn func() error
}

// Close ends the tunnel and its connection.
func (t *Tunnel) Close() error {
	return errors.Join(t.ClientConn.Close(), t.closeConn())
}

// Dial opens the tunnel.
func Dial(ctx context.Context, c Config) (*Tunnel, error) {
	u, err := url.Parse(c.Proxy)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("proxy URL %q: want https://host:port", c.Proxy)
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	path, err := url.ParseRequestURI(c.Path)
	if err != nil || path.Host != "" {
		return nil, fmt.Errorf("request path %q: want /PATH[?QUERY]", c.Path)
	}
	switch c.Transport {
	case "h3":
		return dialH3(ctx, c, path, u.Host)
	case "h2":
		return dialH2(ctx, c, path, u.Host)
	case "", "auto":
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		t, err := dialH3(hctx, c, path, u.Host)
		cancel()
		var pe *proxyconn.ProxyError
		if err == nil || errors.As(err, &pe) || ctx.Err() != nil {
			return t, err // a refusal is the proxy's answer, not a blocked path
		}
		if c.Logf != nil {
			c.Logf("HTTP/3 failed (%v); trying HTTP/2", err)
		}
		return dialH2(ctx, c, path, u.Host)
	}
	return nil, fmt.Errorf("transport %q: want auto, h3 or h2", c.Transport)
}

// request is the CONNECT-IP request for c.Path, which is already
// percent-encoded (an expanded template: %2A, %2F, %3A stay as they are).
func request(c Config, u *url.URL, authority, authz string) *http.Request {
	req := &http.Request{
		Method: http.MethodConnect,
		Proto:  connectip.Protocol,
		Host:   authority,
		URL:    &url.URL{Scheme: "https", Host: authority, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Header: http.Header{http3.CapsuleProtocolHeader: {"?1"}},
	}
	proxyconn.SetRequestHeader(req, c.Header, authz)
	return req
}

func dialH3(ctx context.Context, c Config, path *url.URL, authority string) (*Tunnel, error) {
	tc := c.TLSConfig.Clone()
	tc.NextProtos = []string{http3.NextProtoH3}
	qc, err := quic.DialAddr(ctx, authority, tc, &quic.Config{EnableDatagrams: true, InitialPacketSize: 1350,
		KeepAlivePeriod: 15 * time.Second, MaxIdleTimeout: 60 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connecting to the proxy over QUIC: %w", err)
	}
	// The connection's server streams are ours to read, so that http3 does
	// not dispatch its datagrams through a 32-deep queue per stream, which
	// lost a fifth of a download's packets under bursts; ReceiveDatagram
	// reads them off the connection instead (h3Datagrams).
	cc := (&http3.Transport{EnableDatagrams: true}).NewRawClientConn(qc)
	ctl := &h3Control{qc: qc, raw: cc, settings: make(chan [2]bool, 1)}
	ctl.wg.Go(ctl.acceptStreams)
	closeConn := func() error {
		err := qc.CloseWithError(0, "")
		ctl.wg.Wait()
		return err
	}
	fail := func(err error) (*Tunnel, error) {
		closeConn()
		return nil, err
	}
	select {
	case s := <-ctl.settings:
		if !s[0] || !s[1] {
			return fail(errors.New("the proxy offers no extended CONNECT with datagrams over HTTP/3"))
		}
	case <-qc.Context().Done():
		return fail(fmt.Errorf("waiting for the proxy's SETTINGS: %w", context.Cause(qc.Context())))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	rs, err := proxyconn.Do(ctx, c.Authorizer, func(authz string) (*http3.RequestStream, error) {
		rs, err := cc.OpenRequestStream(ctx)
		if err != nil {
			return nil, err
		}
		if err := rs.SendRequestHeader(request(c, path, authority, authz).WithContext(ctx)); err != nil {
			return nil, err
		}
		resp, err := rs.ReadResponse()
		if err != nil {
			return nil, fmt.Errorf("reading the proxy's response: %w", err)
		}
		if resp.StatusCode/100 != 2 {
			rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			rs.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			return nil, proxyconn.Refusal(resp)
		}
		return rs, nil
	})
	if err != nil {
		return fail(err)
	}
	remote := qc.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	dg := &capsule.StreamDatagrams{QUICDatagrams: capsule.NewQUICDatagrams(qc, rs.StreamID()),
		Stream: &h3Datagrams{qc: qc, qsid: uint64(rs.StreamID() / 4)}}
	return &Tunnel{ClientConn: connectip.NewClientConn(&h3Stream{rs}, dg), Transport: "h3", Remote: remote,
		closeConn: closeConn}, nil
}

// h3Control reads the proxy's streams of a connection that carries one
// tunnel: the control stream itself (h3.ReadControl), the others through
// http3.
type h3Control struct {
	qc       *quic.Conn
	raw      *http3.RawClientConn
	settings chan [2]bool // extended CONNECT, datagrams: once
	wg       sync.WaitGroup
}

// acceptStreams runs until the connection closes.
func (c *h3Control) acceptStreams() {
	c.wg.Go(func() {
		for {
			str, err := c.qc.AcceptStream(context.Background())
			if err != nil {
				return
			}
			c.raw.HandleBidirectionalStream(str) // a protocol error from a server
		}
	})
	for {
		str, err := c.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		var typ [1]byte
		if _, err := str.Peek(typ[:]); err != nil {
			continue
		}
		if typ[0] != 0x00 { // not the control stream (RFC 9114 §6.2.1)
			c.raw.HandleUnidirectionalStream(str)
			continue
		}
		c.wg.Go(func() {
			err := h3.ReadControl(bufio.NewReader(str),
				func(connect, datagrams bool) { c.settings <- [2]bool{connect, datagrams} }, func() {})
			c.qc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeClosedCriticalStream), "control stream: "+errString(err))
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// h3Datagrams receives the tunnel's HTTP Datagrams straight off the QUIC
// connection (whose queue holds 128), dropping those of other streams.
type h3Datagrams struct {
	qc   *quic.Conn
	qsid uint64
}

func (d *h3Datagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	for {
		b, err := d.qc.ReceiveDatagram(ctx)
		if err != nil {
			return nil, err
		}
		if id, n, err := quicvarint.Parse(b); err == nil && id == d.qsid {
			return b[n:], nil
		}
	}
}

type h3Stream struct{ *http3.RequestStream }

func (s *h3Stream) CloseWrite() error { return s.RequestStream.Close() }
func (s *h3Stream) Abort() error {
	s.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	s.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	return nil
}

func dialH2(ctx context.Context, c Config, path *url.URL, authority string) (*Tunnel, error) {
	tc := c.TLSConfig.Clone()
	tc.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: tc}).DialContext(ctx, "tcp", authority)
	if err != nil {
		return nil, fmt.Errorf("connecting to the proxy over TLS: %w", err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(conn) //lint:ignore SA1019 one connection of our own, as client/h2
	if err != nil {
		conn.Close()
		return nil, err
	}
	s, err := proxyconn.Do(ctx, c.Authorizer, func(authz string) (*h2Stream, error) {
		req := request(c, path, authority, authz)
		req.Proto = ""
		req.Header.Set(":protocol", connectip.Protocol)
		pr, pw := io.Pipe()
		req.Body, req.ContentLength = pr, -1
		life, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, cancel)
		resp, err := cc.RoundTrip(req.WithContext(life))
		stop()
		if err == nil && resp.StatusCode/100 != 2 {
			resp.Body.Close()
			err = proxyconn.Refusal(resp)
		}
		if err != nil {
			cancel()
			pw.Close()
			return nil, err
		}
		return &h2Stream{ReadCloser: resp.Body, pw: pw, cancel: cancel}, nil
	})
	if err != nil {
		cc.Close()
		return nil, err
	}
	remote := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	return &Tunnel{ClientConn: connectip.NewClientConn(s, nil), Transport: "h2", Remote: remote, closeConn: cc.Close}, nil
}

type h2Stream struct {
	io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
}

func (s *h2Stream) Write(b []byte) (int, error) { return s.pw.Write(b) }
func (s *h2Stream) CloseWrite() error           { return s.pw.Close() }
func (s *h2Stream) Abort() error {
	s.pw.CloseWithError(net.ErrClosed)
	s.cancel()
	return s.ReadCloser.Close()
}

var _ connectip.Stream = (*h2Stream)(nil)

// Run dials the tunnel, brings up the device and carries packets until ctx
// ends (nil) or the tunnel does (its error); then it tears everything down.
func Run(ctx context.Context, c Config) error {
	t, err := Dial(ctx, c)
	if err != nil {
		return err
	}
	defer t.Close()
	return Serve(ctx, t, c)
}

// Serve brings up the device for t and relays until ctx ends or t does.
func Serve(ctx context.Context, t *Tunnel, c Config) error {
	logf := c.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	addrs, advertised, err := t.Config(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for the proxy's addresses and routes: %w", err)
	}
	routes := c.Routes
	if routes == nil {
		routes = splitDefault(advertised)
	}
	dev, err := tun.Open(c.Device)
	if err != nil {
		return err
	}
	defer dev.Close() // removes the device's addresses and routes too
	if err := dev.Up(1280, addrs...); err != nil {
		return err
	}
	for _, r := range routes {
		if r.Contains(t.Remote) || (r.Bits() <= 1 && r.Addr().Is4() == t.Remote.Is4()) {
			undo, err := tun.PinHost(t.Remote)
			if err != nil {
				return err
			}
			defer undo()
			break
		}
	}
	for _, r := range routes {
		if err := dev.AddRoute(r); err != nil {
			return err
		}
	}
	logf("vpn: %s up over %s, addresses %v, routes %v", dev.Name(), t.Transport, addrs, routes)
	return relay(ctx, t, dev)
}

// splitDefault replaces default routes by their two halves, which the
// kernel prefers to the host's default route without replacing it.
func splitDefault(routes []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range routes {
		if r.Bits() == 0 {
			lo := netip.PrefixFrom(r.Addr(), 1)
			b := r.Addr().AsSlice()
			b[0] = 0x80
			hi, _ := netip.AddrFromSlice(b)
			out = append(out, lo, netip.PrefixFrom(hi, 1))
			continue
		}
		out = append(out, r)
	}
	return out
}

// relay moves packets between the device and the tunnel until ctx ends or
// either side fails.
func relay(ctx context.Context, t *Tunnel, dev *tun.Device) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() { // device to proxy
		b := make([]byte, 65535)
		for {
			n, err := dev.Read(b)
			if err != nil {
				errc <- err
				return
			}
			if err := t.WritePacket(b[:n]); err != nil && !errors.Is(err, masque.ErrDatagramTooLarge) {
				errc <- err
				return
			}
		}
	})
	wg.Go(func() { // proxy to device
		b := make([]byte, 65535)
		for {
			n, err := t.ReadPacket(b)
			if err != nil {
				errc <- err
				return
			}
			_, _ = dev.Write(b[:n]) // a packet the kernel refuses is dropped
		}
	})
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, net.ErrClosed) {
			err = t.Err()
		}
		err = fmt.Errorf("vpn: tunnel lost: %w", err)
	}
	t.ClientConn.Close()
	dev.Close()
	wg.Wait()
	return err
}
