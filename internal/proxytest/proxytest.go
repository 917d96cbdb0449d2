// Package proxytest runs masqued's proxy in-process on loopback for the
// tests of the packages around it (commands, interop), so that each does not
// wire the tunnel core, metrics and servers again: HTTP/3 alone (StartH3), or
// with the HTTP/2 and HTTP/1.1 front on the same port (Start, which needs
// xconnect.Enable in TestMain). The fronts' own tests cannot import it and
// keep their own helpers.
package proxytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// Proxy is a running test proxy.
type Proxy struct {
	URL      string               // https://HOST:PORT
	Addr     *net.UDPAddr         // where it listens
	CertFile string               // PEM of the certificate to trust (testnet's)
	Registry *prometheus.Registry // its metrics
}

// StartH3 runs an HTTP/3 proxy on host's loopback address until the test
// ends. allowPrivate opts in to loopback targets, as -allow-private-targets
// does; without it the proxy keeps the production SSRF policy. Each
// configure function may then change the tunnel core's configuration (to
// add an Authenticator or a Logger, say).
func StartH3(t testing.TB, host string, allowPrivate bool, configure ...func(*tunnel.Config)) *Proxy {
	t.Helper()
	return start(t, host, allowPrivate, false, configure)
}

// Start runs the proxy as masqued does: HTTP/3 on a UDP port of host's
// loopback address, HTTP/2 and HTTP/1.1 on the same TCP port. configure is
// as for StartH3.
func Start(t testing.TB, host string, allowPrivate bool, configure ...func(*tunnel.Config)) *Proxy {
	t.Helper()
	return start(t, host, allowPrivate, true, configure)
}

// StartRelay runs an ingress relay as masqued -relay-to does, on both fronts
// of host: it tunnels to egress alone, with the production SSRF policy for
// everything else. configure is as for StartH3.
func StartRelay(t testing.TB, host string, egress *Proxy, configure ...func(*tunnel.Config)) *Proxy {
	t.Helper()
	relayTo := func(c *tunnel.Config) {
		c.Policy.RelayTo = []masque.Target{{Host: egress.Addr.IP.String(), Port: uint16(egress.Addr.Port)}}
	}
	return start(t, host, false, true, append([]func(*tunnel.Config){relayTo}, configure...))
}

func start(t testing.TB, host string, allowPrivate, tcp bool, configure []func(*tunnel.Config)) *Proxy {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := tunnel.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pc, tl := listen(t, host, tcp)
	addr := pc.LocalAddr().(*net.UDPAddr)
	c := tunnel.Config{
		Policy:  tunnel.Policy{AllowPrivate: allowPrivate, SelfPorts: []netip.AddrPort{addr.AddrPort()}},
		Metrics: m,
	}
	for _, f := range configure {
		f(&c)
	}
	p, err := tunnel.New(c)
	if err != nil {
		t.Fatal(err)
	}
	cert := testnet.NewCert(t)
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(certFile, cert.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &h3proxy.Server{Proxy: p, TLSConfig: cert.ServerTLS()}
	if len(c.Policy.RelayTo) > 0 {
		srv.QUICConfig = h3proxy.RelayQUICConfig()
	}
	serve(t, func() error { return srv.Serve(pc) }, srv.Close)
	if tl != nil {
		h2 := &h2proxy.Server{Proxy: p, TLSConfig: cert.ServerTLS(), AltSvc: fmt.Sprintf(`h3=":%d"`, addr.Port)}
		serve(t, func() error { return h2.Serve(tl) }, h2.Close)
	}
	return &Proxy{URL: "https://" + addr.String(), Addr: addr, CertFile: certFile, Registry: reg}
}

// listen opens a UDP socket on host and, with tcp, a TCP listener on the
// same port, closed at cleanup.
func listen(t testing.TB, host string, tcp bool) (*net.UDPConn, net.Listener) {
	t.Helper()
	for try := 0; ; try++ {
		pc := testnet.UDP(t, host)
		if !tcp {
			return pc, nil
		}
		tl, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, tl
		}
		pc.Close()
		if try == 10 {
			t.Fatalf("no port free on both UDP and TCP: %v", err)
		}
	}
}

// serve runs a front until the test ends.
func serve(t testing.TB, serve func() error, closeFn func() error) {
	done := make(chan error, 1)
	go func() { done <- serve() }()
	t.Cleanup(func() {
		closeFn()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy: %v", err)
		}
	})
}

// Metric returns the value of the counter or gauge name, summed over the
// series whose labels include all of labels ("key", "value", …).
func (p *Proxy) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return testnet.Metric(t, p.Registry, name, labels...)
}

// FetchH3 GETs https://ORIGIN+path over HTTP/3 inside a CONNECT-UDP tunnel
// that a client opens through the proxy at proxyURL, and returns the body
// and the packets the client's tunnel dropped. Any failure or non-200 status
// fails the test.
func FetchH3(t testing.TB, proxyURL string, cfg h3.Config, origin *net.UDPAddr, path string) ([]byte, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := h3.Dial(ctx, proxyURL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.ListenUDP(ctx, origin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	h3 := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
	defer h3.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+origin.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h3.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body after %d bytes: %v", len(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	return body, u.Dropped()
}
