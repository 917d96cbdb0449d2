package tunnel_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testProxy is a Proxy with its own metrics registry.
type testProxy struct {
	*tunnel.Proxy
	reg *prometheus.Registry
}

// newProxy returns a Proxy for cfg, with Metrics on a fresh pedantic registry
// unless cfg has its own.
func newProxy(t testing.TB, cfg tunnel.Config) *testProxy {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if cfg.Metrics == nil {
		m, err := tunnel.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Metrics = m
	}
	p, err := tunnel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testProxy{Proxy: p, reg: reg}
}

// metric returns the value of the counter or gauge name whose labels include
// labels, and 0 if there is none.
func (p *testProxy) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// openTarget parses target and opens a tunnel to it through the "test" front.
func openTarget(t testing.TB, p *testProxy, kind tunnel.Kind, target string, conn *tunnel.ConnState) (*tunnel.Tunnel, error) {
	t.Helper()
	tgt, err := masque.ParseAuthority(target)
	if err != nil {
		t.Fatal(err)
	}
	return p.Front("test").Open(testContext(t), connectRequest(target), kind, tgt, conn)
}

// open opens a tunnel to target, closed at cleanup.
func (p *testProxy) open(t testing.TB, kind tunnel.Kind, target string) *tunnel.Tunnel {
	t.Helper()
	tun, err := openTarget(t, p, kind, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func testContext(t testing.TB) context.Context { return testnet.Context(t, 10*time.Second) }

// connectRequest is an HTTP/2-style CONNECT request for authority.
func connectRequest(authority string) *http.Request {
	r, _ := http.NewRequest(http.MethodConnect, "https://"+authority, nil)
	r.Host = authority
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	return r
}

// tcpPair returns both ends of a TCP connection on host's loopback address,
// closed at cleanup.
func tcpPair(t testing.TB, host string) (client, server *net.TCPConn) {
	t.Helper()
	l := testnet.TCP(t, host)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// tcpStream is a TCP connection as a tunnel.Stream, standing in for an HTTP
// request stream: FIN is CloseWrite, a reset is Close.
type tcpStream struct{ *net.TCPConn }

func (s tcpStream) Abort() error { return s.Close() }

// closedPort returns a loopback TCP address nothing listens on.
func closedPort(t testing.TB, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// dnsResolver runs a DNS server on 127.0.0.1 that answers A and AAAA queries
// from zone (fully qualified names) and NXDOMAIN for every other name, and
// returns a Go resolver that uses it. Names in /etc/hosts are still answered
// from there, as the system resolver would. No query leaves loopback.
func dnsResolver(t testing.TB, zone map[string][]netip.Addr) *net.Resolver {
	t.Helper()
	pc := testnet.UDP(t, testnet.IPv4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if resp, err := dnsAnswer(buf[:n], zone); err == nil {
				_, _ = pc.WriteToUDPAddrPort(resp, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	server := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", server)
		},
	}
}

func dnsAnswer(query []byte, zone map[string][]netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	addrs, known := zone[q.Name.String()]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// wantStatus fails unless err maps to status and kind.
func wantStatus(t testing.TB, err error, status int, kind string) *masque.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d %s", status, kind)
	}
	got, e := masque.StatusOf(err)
	if got != status || e.Kind != kind {
		t.Fatalf("%v maps to %d %s, want %d %s", err, got, e.Kind, status, kind)
	}
	return e
}
