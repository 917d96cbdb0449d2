// Package vpn is masque-client's device-wide tunnel: one CONNECT-IP tunnel
// (RFC 9484) to the proxy over HTTP/3, or HTTP/2 where UDP is blocked, a TUN
// device with the addresses the proxy assigns, and routes through it, until
// the context ends or the proxy goes away; then the device, its routes and
// the pinned route to the proxy are removed.
package vpn

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

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/tun"
	"github.com/masqued/masqued/masque"
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

// requestURL is the CONNECT-IP request's URL for path, which is already
// percent-encoded (an expanded template: %2A, %2F, %3A stay as they are).
func requestURL(path *url.URL, authority string) *url.URL {
	return &url.URL{Scheme: "https", Host: authority, Path: path.Path, RawPath: path.RawPath, RawQuery: path.RawQuery}
}

func dialH3(ctx context.Context, c Config, path *url.URL, authority string) (*Tunnel, error) {
	cl, err := h3.Dial(ctx, c.Proxy, h3.Config{TLSConfig: c.TLSConfig, Authorizer: c.Authorizer, Header: c.Header})
	if err != nil {
		return nil, err
	}
	rs, dg, err := cl.ConnectIP(ctx, requestURL(path, authority))
	if err != nil {
		cl.Close()
		return nil, err
	}
	remote := cl.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return &Tunnel{ClientConn: connectip.NewClientConn(&h3Stream{rs}, dg), Transport: "h3", Remote: remote,
		closeConn: cl.Close}, nil
}

type h3Stream struct{ *http3.RequestStream }

func (s *h3Stream) CloseWrite() error { return s.RequestStream.Close() }
func (s *h3Stream) Abort() error {
	s.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	s.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	return nil
}

func dialH2(ctx context.Context, c Config, path *url.URL, authority string) (*Tunnel, error) {
	cl, err := h2.Dial(ctx, c.Proxy, h2.Config{TLSConfig: c.TLSConfig, Authorizer: c.Authorizer, Header: c.Header})
	if err != nil {
		return nil, err
	}
	s, err := cl.ConnectIP(ctx, requestURL(path, authority))
	if err != nil {
		cl.Close()
		return nil, err
	}
	remote := cl.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	return &Tunnel{ClientConn: connectip.NewClientConn(s, nil), Transport: "h2", Remote: remote, closeConn: cl.Close}, nil
}

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
