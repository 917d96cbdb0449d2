package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/h3proxy"
)

// Proxies a case can go through.
const (
	direct   = ""
	masqueGo = "masque-go"
	masqued  = "masqued"
)

// benchCase is one row of the table: a download of the payload over HTTP/3
// (h3) or plain TCP, directly or through a proxy.
type benchCase struct {
	name    string
	h3      bool   // HTTP/3 GET from the HTTP/3 origin; else read the TCP origin
	via     string // the proxy, or direct
	baseVs  string // the case the "vs direct" column compares with
	extraVs string // a second case to compare with, if any
	targets []target
}

// target is a ratio a case must reach against another case.
type target struct {
	vs  string
	min float64
}

var allCases = []benchCase{
	{name: "h3-direct", h3: true, via: direct},
	{name: "h3-via-masque-go", h3: true, via: masqueGo, baseVs: "h3-direct"},
	{name: "h3-via-masqued", h3: true, via: masqued, baseVs: "h3-direct", extraVs: "h3-via-masque-go",
		targets: []target{{"h3-direct", 0.35}, {"h3-via-masque-go", 2.5}}},
	{name: "tcp-direct", via: direct},
	{name: "tcp-via-masqued", via: masqued, baseVs: "tcp-direct", targets: []target{{"tcp-direct", 0.6}}},
}

func caseNames() []string {
	var names []string
	for _, c := range allCases {
		names = append(names, c.name)
	}
	return names
}

// selectCases returns the named cases in table order; no names means all.
func selectCases(names []string) ([]benchCase, error) {
	if len(names) == 0 {
		return allCases, nil
	}
	var cs []benchCase
	for _, c := range allCases {
		for _, n := range names {
			if n == c.name {
				cs = append(cs, c)
			}
		}
	}
	if len(cs) != len(names) {
		return nil, fmt.Errorf("-case %q: want some of %q", names, caseNames())
	}
	return cs, nil
}

// download runs one download of c and checks what arrived. Its time
// includes setting up the connections and the tunnel.
func (e *env) download(ctx context.Context, c benchCase, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	body, err := e.open(ctx, c)
	if err != nil {
		return 0, err
	}
	sum := crc32.New(castagnoli)
	n, err := io.Copy(sum, body)
	err = errors.Join(err, body.Close())
	elapsed := time.Since(start)
	switch {
	case err != nil:
		return 0, fmt.Errorf("after %d bytes: %w", n, err)
	case n != e.payload.size || sum.Sum32() != e.payload.sum:
		return 0, fmt.Errorf("got %d bytes with CRC-32C %08x, want %d bytes with %08x", n, sum.Sum32(), e.payload.size, e.payload.sum)
	}
	return elapsed, nil
}

// open starts c's download and returns its body; closing the body closes
// everything the download opened.
func (e *env) open(ctx context.Context, c benchCase) (io.ReadCloser, error) {
	var client *h3proxy.Client
	if c.via != direct {
		p := e.proxies[c.via]
		var err error
		if client, err = h3proxy.Dial(ctx, p.url, h3proxy.ClientConfig{TLSConfig: p.tls, Template: p.template}); err != nil {
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
		var pc net.PacketConn
		if pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: e.h3Origin.IP}); err == nil {
			body, err = e.get(ctx, pc)
		}
	default:
		var pc net.PacketConn
		if pc, err = client.ListenUDP(ctx, e.h3Origin.String()); err == nil {
			body, err = e.get(ctx, pc)
		}
	}
	if client != nil {
		body, err = withCloser(body, err, client.Close)
	}
	return body, err
}

// get GETs the payload from the HTTP/3 origin with QUIC over pc, a loopback
// socket or a tunnel; the body owns pc.
func (e *env) get(ctx context.Context, pc net.PacketConn) (io.ReadCloser, error) {
	qt := &quic.Transport{Conn: pc}
	tr := &http3.Transport{
		TLSClientConfig: e.originTLS,
		QUICConfig:      originQUICConfig(),
		Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return qt.DialEarly(ctx, e.h3Origin, tlsConf, qc)
		},
	}
	closeAll := func() error { return errors.Join(tr.Close(), qt.Close(), pc.Close()) }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.h3Origin.String()+"/", nil)
	if err != nil {
		return withCloser(nil, err, closeAll)
	}
	resp, err := tr.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("origin answered %s", resp.Status)
	}
	if err != nil {
		return withCloser(nil, err, closeAll)
	}
	return withCloser(resp.Body, nil, closeAll)
}

// originQUICConfig is the client's QUIC configuration towards the origin,
// directly or inside a tunnel: the flow-control windows of the connection
// to the proxy (h3proxy.DefaultClientQUICConfig), so that neither layer
// limits the other. Its packets stay at 1280 bytes, which fit into the
// proxy connection's DATAGRAM frames.
func originQUICConfig() *quic.Config {
	outer := h3proxy.DefaultClientQUICConfig()
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
