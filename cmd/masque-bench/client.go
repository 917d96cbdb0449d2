package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/h3"
)

// open starts c's download with our client and returns its body; closing
// the body closes everything the download opened.
func (e *env) open(ctx context.Context, c benchCase) (io.ReadCloser, error) {
	if c.tls {
		return e.openTLS(ctx, c)
	}
	var client *h3.Client
	closeClient := func() error { return nil }
	if c.via != direct {
		var err error
		if client, closeClient, err = e.dialProxy(ctx, c); err != nil {
			return nil, err
		}
	}
	var body io.ReadCloser
	var err error
	switch {
	case !c.h3 && client == nil:
		body, err = (&net.Dialer{}).DialContext(ctx, "tcp", e.tcpOrigin.String())
	case !c.h3:
		body, err = client.DialTCP(ctx, e.tcpOrigin.String())
	case client == nil:
		var pc *net.UDPConn
		if pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: e.h3Origin.IP}); err == nil {
			qt := &quic.Transport{Conn: pc}
			tr := &http3.Transport{
				TLSClientConfig: e.originTLS,
				QUICConfig:      originQUICConfig(),
				Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
					return qt.DialEarly(ctx, e.h3Origin, tlsConf, qc)
				},
			}
			body, err = e.fetch(ctx, c, tr, func() error { return errors.Join(tr.Close(), qt.Close(), pc.Close()) })
		}
	default:
		var u *h3.UDPConn
		if u, err = client.ListenUDP(ctx, e.h3Origin.String()); err == nil {
			tr := u.HTTP3(e.originTLS, originQUICConfig())
			body, err = e.fetch(ctx, c, tr, func() error { return errors.Join(tr.Close(), u.Close(), forwardedUsed(c, u)) })
		}
	}
	if client != nil {
		body, err = withCloser(body, err, closeClient)
	}
	return body, err
}

// dialProxy connects our client to c's proxy, in a two-hop case through the
// relay: HTTP/3 to the relay, a CONNECT-UDP tunnel through it to the
// proxy's port, and HTTP/3 to the proxy in that tunnel, as
// client.Dialer.Relay does. It returns the connection to the proxy and what
// closes everything it opened.
func (e *env) dialProxy(ctx context.Context, c benchCase) (*h3.Client, func() error, error) {
	p := e.proxies[c.via]
	url := p.url
	if c.forwarded {
		url = p.fwdURL
	}
	cfg := h3.Config{TLSConfig: p.tls, Template: p.template, Forwarding: c.forwarded}
	if !c.relay {
		client, err := h3.Dial(ctx, url, cfg)
		if err != nil {
			return nil, nil, err
		}
		return client, client.Close, nil
	}
	relay, err := h3.Dial(ctx, e.relay.url, h3.Config{TLSConfig: e.relay.tls, QUICConfig: h3.RelayQUICConfig()})
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %w", err)
	}
	if cfg.PacketConn, err = relay.ListenUDP(ctx, strings.TrimPrefix(url, "https://")); err != nil {
		relay.Close()
		return nil, nil, fmt.Errorf("relay: tunnel to the egress: %w", err)
	}
	client, err := h3.Dial(ctx, url, cfg) // closes the tunnel if it fails
	if err != nil {
		relay.Close()
		return nil, nil, fmt.Errorf("egress through the relay: %w", err)
	}
	return client, func() error { return errors.Join(client.Close(), relay.Close()) }, nil
}

// openTLS opens a TLS connection to the TLS origin, directly or through a
// CONNECT tunnel over the proxy's HTTP/2 front, and returns it as the body.
func (e *env) openTLS(ctx context.Context, c benchCase) (io.ReadCloser, error) {
	if c.via == direct {
		return (&tls.Dialer{Config: e.originTLS}).DialContext(ctx, "tcp", e.tlsOrigin.String())
	}
	p := e.proxies[c.via]
	client, err := h2.Dial(ctx, p.url, h2.Config{TLSConfig: p.tls})
	if err != nil {
		return nil, err
	}
	conn, err := client.DialTCP(ctx, e.tlsOrigin.String())
	if err != nil {
		return withCloser(nil, err, client.Close)
	}
	tlsConf := e.originTLS.Clone()
	tlsConf.ServerName = e.tlsOrigin.IP.String()
	tc := tls.Client(conn, tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return withCloser(nil, err, client.Close)
	}
	// The origin has closed when the download ends, and with it the tunnel:
	// close the tunnel itself, as there is no one to send close_notify to.
	return withCloser(readCloser{tc, conn}, nil, client.Close)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// fetch GETs the payload from the HTTP/3 origin with rt, or for an upload
// case POSTs it there, and returns the response body; closeAll closes rt
// and what it runs over, and the body owns it. The origin checks an
// upload's length and CRC-32C and answers 200 only if both match.
func (e *env) fetch(ctx context.Context, c benchCase, rt http.RoundTripper, closeAll func() error) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.h3Origin.String()+"/", nil)
	if err != nil {
		return withCloser(nil, err, closeAll)
	}
	if c.upload {
		req.Method, req.Body, req.ContentLength = http.MethodPost, io.NopCloser(e.payload.reader()), e.payload.size
	}
	resp, err := rt.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		err = fmt.Errorf("origin answered %s: %s", resp.Status, msg)
	}
	if err != nil {
		return withCloser(nil, err, closeAll)
	}
	return withCloser(resp.Body, nil, closeAll)
}

// originQUICConfig is our client's QUIC configuration towards the origin,
// directly or inside a tunnel: the flow-control windows of the connection
// to the proxy (h3.DefaultQUICConfig), so that neither layer
// limits the other. Its packets stay at 1280 bytes, which fit into the
// proxy connection's DATAGRAM frames.
func originQUICConfig() *quic.Config {
	outer := h3.DefaultQUICConfig()
	return &quic.Config{
		MaxIdleTimeout:                 outer.MaxIdleTimeout,
		InitialStreamReceiveWindow:     outer.InitialStreamReceiveWindow,
		MaxStreamReceiveWindow:         outer.MaxStreamReceiveWindow,
		InitialConnectionReceiveWindow: outer.InitialConnectionReceiveWindow,
		MaxConnectionReceiveWindow:     outer.MaxConnectionReceiveWindow,
	}
}

// withCloser makes closing body also run closeFn; if err is set, it runs
// closeFn (and closes body, if any) and returns err.
func withCloser(body io.ReadCloser, err error, closeFn func() error) (io.ReadCloser, error) {
	if err != nil {
		if body != nil {
			body.Close()
		}
		closeFn()
		return nil, err
	}
	return &closingBody{ReadCloser: body, closeFn: closeFn}, nil
}

type closingBody struct {
	io.ReadCloser
	closeFn func() error
}

func (b *closingBody) Close() error { return errors.Join(b.ReadCloser.Close(), b.closeFn()) }

// forwardedUsed fails a forwarded case whose packets all went tunnelled:
// its figures would be the tunnelled case's under another name.
func forwardedUsed(c benchCase, u *h3.UDPConn) error {
	if !c.forwarded {
		return nil
	}
	if st := u.Forwarded(); !u.Forwarding() || st.Received == 0 {
		return fmt.Errorf("%s: forwarded mode was not used (negotiated %v, %+v)", c.name, u.Forwarding(), st)
	}
	return nil
}
