package h3proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
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

// safeByDefault leaves the SSRF policy as it is in production; the dialer
// still refuses anything off loopback, in case the policy is broken.
func safeByDefault(t testing.TB) proxyOption {
	return func(c *tunnel.Config) {
		c.Policy.AllowPrivate = false
		c.Dialer = &loopbackOnly{t: t}
	}
}

// startProxy runs an HTTP/3 proxy on host that may reach loopback targets
// (tests opt in, as -allow-private-targets does), stopped at cleanup.
func startProxy(t testing.TB, host string, opts ...proxyOption) *testProxy {
	t.Helper()
	return serveProxy(t, host, false, opts...)
}

// startForwardingProxy is startProxy on a tunnel.ForwardSocket, as
// masqued -forward-listen serves: it offers forwarded mode.
func startForwardingProxy(t testing.TB, host string, opts ...proxyOption) *testProxy {
	t.Helper()
	return serveProxy(t, host, true, opts...)
}

func serveProxy(t testing.TB, host string, forwarding bool, opts ...proxyOption) *testProxy {
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
	var served net.PacketConn = pc
	var fs *tunnel.ForwardSocket
	if forwarding {
		fs = tunnel.NewForwardSocket(pc, m)
		served = fs
	}
	go func() { done <- srv.Serve(served) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		if fs != nil {
			fs.Close() // it owns pc from NewForwardSocket on
		}
	})
	addr := pc.LocalAddr().(*net.UDPAddr)
	return &testProxy{URL: "https://" + addr.String(), Addr: addr, Metrics: m, Reg: reg}
}

// dial connects a client to p, closed at cleanup.
func (p *testProxy) dial(t testing.TB, cfg h3.Config) *h3.Client {
	t.Helper()
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = testnet.NewCert(t).ClientTLS()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h3.Dial(ctx, p.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t testing.TB) context.Context { return testnet.Context(t, 30*time.Second) }

// metric returns the value of the counter or gauge name whose labels include
// all of labels ("key", "value", …), summed over the series that match.
func (p *testProxy) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return testnet.Metric(t, p.Reg, name, labels...)
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loopbackOnly is a Dialer for tests that exercise the default policy: if the
// policy ever let a non-loopback address through, the test fails instead of
// sending traffic off this machine.
type loopbackOnly struct {
	t testing.TB
	tunnel.NetDialer
}

func (d *loopbackOnly) Dial(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, error) {
	for _, a := range addrs {
		if !a.Addr().Unmap().IsLoopback() {
			d.t.Errorf("policy let %v through to the dialer", a)
			return nil, errors.New("test dialer: non-loopback target")
		}
	}
	return d.NetDialer.Dial(ctx, network, addrs, r)
}

// ping sends msg through a UDP tunnel to an echo server and checks that it
// comes back.
func ping(t testing.TB, u *h3.UDPConn, msg string) {
	t.Helper()
	if _, err := u.WriteTo([]byte(msg), nil); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := u.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no echo of %q: %v", msg, err)
	}
	if string(buf[:n]) != msg {
		t.Fatalf("got %q, want %q", buf[:n], msg)
	}
}
