package h3proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/internal/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testProxy is a proxy serving on loopback for one test.
type testProxy struct {
	URL     string // https://127.0.0.1:PORT
	Addr    *net.UDPAddr
	Metrics *tunnel.Metrics
	Reg     *prometheus.Registry
}

type proxyOption func(*tunnel.Config)

func withLimits(l tunnel.Limits) proxyOption { return func(c *tunnel.Config) { c.Limits = l } }

// safeByDefault leaves the SSRF policy as it is in production.
func safeByDefault() proxyOption { return func(c *tunnel.Config) { c.Policy.AllowPrivate = false } }

// startProxy runs an HTTP/3 proxy on host that may reach loopback targets
// (tests opt in, as -allow-private-targets does), stopped at cleanup.
func startProxy(t testing.TB, host string, opts ...proxyOption) *testProxy {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := tunnel.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Metrics: m}
	for _, o := range opts {
		o(&cfg)
	}
	pc := testnet.UDP(t, host)
	cfg.Policy.SelfPorts = append(cfg.Policy.SelfPorts, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	p, err := tunnel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Proxy: p, TLSConfig: testnet.NewCert(t).ServerTLS()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := pc.LocalAddr().(*net.UDPAddr)
	return &testProxy{URL: "https://" + addr.String(), Addr: addr, Metrics: m, Reg: reg}
}

// dial connects a client to p, closed at cleanup.
func (p *testProxy) dial(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = testnet.NewCert(t).ClientTLS()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, p.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
