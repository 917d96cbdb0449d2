package h2proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) {
	// After answering a request it will not read (431), net/http sleeps
	// 500 ms before closing so the client sees the answer, not a reset
	// (net/http's rstAvoidanceDelay); that goroutine ends by itself.
	testnet.MainHTTP2(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// testProxy is a TCP front serving on loopback for one test.
type testProxy struct {
	URL      string // https://127.0.0.1:PORT
	Addr     *net.TCPAddr
	CertFile string
	Reg      *prometheus.Registry
	srv      *Server
}

type proxyOption func(*tunnel.Config, *Server)

// startProxy runs the TCP front on host, allowed to reach loopback targets
// (tests opt in, as -allow-private-targets does), closed at cleanup.
func startProxy(t testing.TB, host string, opts ...proxyOption) *testProxy {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := tunnel.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := testnet.TCP(t, host)
	addr := l.Addr().(*net.TCPAddr)
	cfg := tunnel.Config{
		Policy:  tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr.AddrPort()}},
		Metrics: m,
	}
	cert := testnet.NewCert(t)
	srv := &Server{TLSConfig: cert.ServerTLS(), AltSvc: `h3=":443"`}
	for _, o := range opts {
		o(&cfg, srv)
	}
	if srv.Proxy, err = tunnel.New(cfg); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(certFile, cert.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testProxy{URL: "https://" + addr.String(), Addr: addr, CertFile: certFile, Reg: reg, srv: srv}
}

// dial connects a client to p, closed at cleanup.
func (p *testProxy) dial(t testing.TB, cfg h2.Config) *h2.Client {
	t.Helper()
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = testnet.NewCert(t).ClientTLS()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h2.Dial(ctx, p.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p *testProxy) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return testnet.Metric(t, p.Reg, name, labels...)
}

func testContext(t testing.TB) context.Context { return testnet.Context(t, 30*time.Second) }

// ping sends msg through a UDP tunnel to an echo server and checks that it
// comes back.
func ping(t testing.TB, u net.PacketConn, msg string) {
	t.Helper()
	if _, err := u.WriteTo([]byte(msg), nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := u.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no echo of %q: %v", msg, err)
	}
	if string(buf[:n]) != msg {
		t.Fatalf("got %q, want %q", buf[:n], msg)
	}
}

// modes are the client's two ways to reach the TCP front.
var modes = []struct {
	name     string
	cfg      h2.Config
	protocol string
	front    string // the front label of its metrics
}{
	{"h2", h2.Config{}, "h2", "h2"},
	{"http1", h2.Config{HTTP1: true}, "http/1.1", "h1"},
}
