package tunnel_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// request builds a request as a front hands it to the core: uri is the
// request target's path and query (empty for a classic CONNECT).
func request(method string, protoMajor int, scheme, host, uri string) *http.Request {
	u := &url.URL{Host: host}
	if uri != "" {
		var err error
		if u, err = url.ParseRequestURI(uri); err != nil {
			panic(err)
		}
	}
	u.Scheme = scheme
	return &http.Request{Method: method, ProtoMajor: protoMajor, Host: host, URL: u, Header: http.Header{}}
}

func TestParseRequest(t *testing.T) {
	f := newProxy(t, tunnel.Config{}).Front("test")
	const udpPath = "/.well-known/masque/udp/192.0.2.1/53/"
	udpTarget := masque.Target{Host: "192.0.2.1", Port: 53}
	tcpTarget := masque.Target{Host: "example.com", Port: 443}
	good := []struct {
		name     string
		r        *http.Request
		protocol string
		kind     tunnel.Kind
		target   masque.Target
	}{
		{"CONNECT on HTTP/1.1", request("CONNECT", 1, "", "example.com:443", ""), "", tunnel.KindTCP, tcpTarget},
		{"CONNECT on HTTP/2", request("CONNECT", 2, "", "example.com:443", ""), "", tunnel.KindTCP, tcpTarget},
		{"CONNECT to IPv6", request("CONNECT", 3, "", "[2001:db8::1]:443", ""), "", tunnel.KindTCP, masque.Target{Host: "2001:db8::1", Port: 443}},
		{"extended CONNECT on HTTP/3", request("CONNECT", 3, "", "proxy.test", udpPath), masque.ProtocolConnectUDP, tunnel.KindUDP, udpTarget},
		{"extended CONNECT on HTTP/2", request("CONNECT", 2, "https", "proxy.test", udpPath), masque.ProtocolConnectUDP, tunnel.KindUDP, udpTarget},
		{"extended CONNECT to IPv6", request("CONNECT", 3, "https", "proxy.test", "/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/"),
			masque.ProtocolConnectUDP, tunnel.KindUDP, masque.Target{Host: "2001:db8::1", Port: 443}},
		{"GET Upgrade on HTTP/1.1", request("GET", 1, "", "proxy.test", udpPath), masque.ProtocolConnectUDP, tunnel.KindUDP, udpTarget},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			kind, target, err := f.ParseRequest(tt.r, tt.protocol)
			if err != nil || kind != tt.kind || target != tt.target {
				t.Fatalf("ParseRequest = %v, %+v, %v; want %v, %+v", kind, target, err, tt.kind, tt.target)
			}
		})
	}
	bad := []struct {
		name     string
		r        *http.Request
		protocol string
		status   int
	}{
		{"CONNECT without port", request("CONNECT", 2, "", "example.com", ""), "", 400},
		{"CONNECT to port 0", request("CONNECT", 1, "", "example.com:0", ""), "", 400},
		{"GET connect-udp on HTTP/2", request("GET", 2, "https", "proxy.test", udpPath), masque.ProtocolConnectUDP, 400},
		{"GET connect-udp on HTTP/3", request("GET", 3, "https", "proxy.test", udpPath), masque.ProtocolConnectUDP, 400},
		{"POST connect-udp on HTTP/1.1", request("POST", 1, "", "proxy.test", udpPath), masque.ProtocolConnectUDP, 400},
		{"connect-udp with http scheme", request("CONNECT", 2, "http", "proxy.test", udpPath), masque.ProtocolConnectUDP, 400},
		{"connect-udp off the template", request("CONNECT", 3, "https", "proxy.test", "/masque/192.0.2.1/53/"), masque.ProtocolConnectUDP, 400},
		{"connect-udp with a bad target", request("CONNECT", 3, "https", "proxy.test", "/.well-known/masque/udp/ex%2Fa/53/"), masque.ProtocolConnectUDP, 400},
		{"unknown protocol", request("CONNECT", 2, "https", "proxy.test", udpPath), "websocket", 400},
		{"connect-ip", request("CONNECT", 3, "https", "proxy.test", udpPath), "connect-ip", 400},
		{"GET to the template path", request("GET", 1, "", "proxy.test", udpPath), "", 400},
		{"POST to the template path", request("POST", 2, "https", "proxy.test", udpPath), "", 400},
		{"GET elsewhere", request("GET", 2, "https", "proxy.test", "/index.html"), "", 405},
		{"POST elsewhere", request("POST", 1, "", "proxy.test", "/"), "", 405},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.ParseRequest(tt.r, tt.protocol)
			wantStatus(t, err, tt.status, masque.StatusHTTPRequestError)
		})
	}
	t.Run("unknown protocol is sanitised in details", func(t *testing.T) {
		_, _, err := f.ParseRequest(request("CONNECT", 2, "https", "proxy.test", udpPath), "bad\r\n"+strings.Repeat("x", 100))
		e := wantStatus(t, err, 400, masque.StatusHTTPRequestError)
		if strings.ContainsAny(e.Details, "\r\n") || strings.Count(e.Details, "x") > 32 {
			t.Fatalf("details %q carry the raw token", e.Details)
		}
	})
}

func TestOpenPolicyAfterResolution(t *testing.T) {
	resolver := dnsResolver(t, map[string][]netip.Addr{
		"loopback.test.": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
	})
	addrs, err := resolver.LookupNetIP(testContext(t), "ip", "localhost")
	if err != nil || len(addrs) == 0 {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	for _, a := range addrs {
		if !a.IsLoopback() {
			t.Skipf("localhost resolves to %v here, not only loopback", addrs)
		}
	}
	l := testnet.TCP(t, testnet.IPv4)
	port := l.Addr().(*net.TCPAddr).Port
	targets := []string{
		net.JoinHostPort("localhost", strconv.Itoa(port)),
		net.JoinHostPort("loopback.test", strconv.Itoa(port)),
		net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	t.Run("refused by default", func(t *testing.T) {
		p := newProxy(t, tunnel.Config{Resolver: resolver})
		for _, target := range targets {
			_, err := openTarget(t, p, tunnel.KindTCP, target, nil)
			wantProhibited(t, err)
		}
	})
	t.Run("allowed with AllowPrivate", func(t *testing.T) {
		p := newProxy(t, tunnel.Config{Resolver: resolver, Policy: tunnel.Policy{AllowPrivate: true}})
		for _, target := range targets {
			tun, err := openTarget(t, p, tunnel.KindTCP, target, nil)
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := tun.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("the proxy's own port", func(t *testing.T) {
		self := netip.MustParseAddrPort(l.Addr().String())
		p := newProxy(t, tunnel.Config{Resolver: resolver, Policy: tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{self}}})
		_, err := openTarget(t, p, tunnel.KindTCP, targets[0], nil)
		wantProhibited(t, err)
	})
}

func TestOpenConnectionRefused(t *testing.T) {
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		t.Run(host, func(t *testing.T) {
			p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}})
			_, err := openTarget(t, p, tunnel.KindTCP, closedPort(t, host), nil)
			wantStatus(t, err, http.StatusBadGateway, masque.StatusConnectionRefused)
		})
	}
}

func TestOpenNXDOMAIN(t *testing.T) {
	p := newProxy(t, tunnel.Config{Resolver: dnsResolver(t, nil)})
	f := p.Front("test")
	_, err := openTarget(t, p, tunnel.KindTCP, "no-such-host.invalid:443", nil)
	e := wantStatus(t, err, http.StatusBadGateway, masque.StatusDNSError)
	if e.Rcode != "NXDOMAIN" {
		t.Fatalf("rcode %q, want NXDOMAIN", e.Rcode)
	}
	w := httptest.NewRecorder()
	f.WriteError(w, err)
	if got, want := w.Result().Header.Get("Proxy-Status"), `masqued; error=dns_error; rcode="NXDOMAIN"`; got != want {
		t.Fatalf("Proxy-Status = %q, want %q", got, want)
	}
	if got := p.metric(t, "masqued_tunnel_errors_total", map[string]string{"front": "test", "proxy_status": "dns_error"}); got != 1 {
		t.Fatalf("errors counted: %v, want 1", got)
	}
}

func TestOpenMaxTunnels(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Limits: tunnel.Limits{MaxTunnels: 1}})
	active := func() float64 {
		return p.metric(t, "masqued_tunnels_active", map[string]string{"front": "test", "kind": "tcp"})
	}
	first, err := openTarget(t, p, tunnel.KindTCP, echo.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := active(); got != 1 {
		t.Fatalf("active tunnels %v, want 1", got)
	}
	_, err = openTarget(t, p, tunnel.KindUDP, echo.String(), nil)
	wantStatus(t, err, http.StatusServiceUnavailable, masque.StatusConnectionLimit)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := active(); got != 0 {
		t.Fatalf("active tunnels %v after Close, want 0", got)
	}
	// A failed dial gives its slot back too.
	_, err = openTarget(t, p, tunnel.KindTCP, closedPort(t, testnet.IPv4), nil)
	wantStatus(t, err, http.StatusBadGateway, masque.StatusConnectionRefused)
	again, err := openTarget(t, p, tunnel.KindTCP, echo.String(), nil)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
	if got := p.metric(t, "masqued_tunnels_total", map[string]string{"front": "test", "kind": "tcp"}); got != 2 {
		t.Fatalf("tunnels opened %v, want 2", got)
	}
}

func TestOpenMaxTunnelsPerConn(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Limits: tunnel.Limits{MaxTunnelsPerConn: 1}})
	var conn1, conn2 tunnel.ConnState
	first, err := openTarget(t, p, tunnel.KindTCP, echo.String(), &conn1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openTarget(t, p, tunnel.KindTCP, echo.String(), &conn1)
	wantStatus(t, err, http.StatusTooManyRequests, masque.StatusConnectionLimit)
	other, err := openTarget(t, p, tunnel.KindTCP, echo.String(), &conn2)
	if err != nil {
		t.Fatalf("another connection: %v", err)
	}
	other.Close()
	first.Close()
	again, err := openTarget(t, p, tunnel.KindTCP, echo.String(), &conn1)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// countingDialer is the default dialer, counting its calls.
type countingDialer struct {
	tunnel.NetDialer
	calls atomic.Int32
}

func (d *countingDialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, error) {
	d.calls.Add(1)
	return d.NetDialer.Dial(ctx, network, addrs, r)
}

func TestOpenAuthenticator(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	var d countingDialer
	auth := tunnel.AuthenticatorFunc(func(r *http.Request) error {
		if r.Header.Get("Proxy-Authorization") == "" {
			return testnet.ProxyAuthRequired()
		}
		return nil
	})
	p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Dialer: &d, Auth: auth, Limits: tunnel.Limits{MaxTunnels: 1}})
	f := p.Front("test")
	target, err := masque.ParseAuthority(echo.String())
	if err != nil {
		t.Fatal(err)
	}

	r := connectRequest(echo.String())
	_, err = f.Open(testContext(t), r, tunnel.KindTCP, target, nil)
	wantStatus(t, err, http.StatusProxyAuthRequired, masque.StatusHTTPRequestDenied)
	if n := d.calls.Load(); n != 0 {
		t.Fatalf("dialed %d times before authentication", n)
	}
	w := httptest.NewRecorder()
	f.WriteError(w, err)
	res := w.Result()
	if res.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(res.Header.Get("Proxy-Authenticate"), "PrivateToken ") {
		t.Fatalf("answered %d with Proxy-Authenticate %q", res.StatusCode, res.Header.Get("Proxy-Authenticate"))
	}

	r.Header.Set("Proxy-Authorization", "PrivateToken token=AAAA")
	tun, err := f.Open(testContext(t), r, tunnel.KindTCP, target, nil)
	if err != nil {
		t.Fatalf("authenticated: %v", err)
	}
	tun.Close()
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("dialed %d times, want 1", n)
	}
}

// TestOpenAuthPerConn: with AuthPerConn a connection authenticates once;
// without it, and for another connection, every request asks again.
func TestOpenAuthPerConn(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	for _, perConn := range []bool{false, true} {
		var asked atomic.Int32
		auth := tunnel.AuthenticatorFunc(func(*http.Request) error {
			if asked.Add(1) > 1 {
				return testnet.ProxyAuthRequired() // the token is spent
			}
			return nil
		})
		p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Auth: auth, AuthPerConn: perConn})
		var conn, other tunnel.ConnState
		for i := range 2 {
			tun, err := openTarget(t, p, tunnel.KindTCP, echo.String(), &conn)
			if i == 1 && !perConn {
				wantStatus(t, err, http.StatusProxyAuthRequired, masque.StatusHTTPRequestDenied)
				continue
			}
			if err != nil {
				t.Fatalf("perConn %v, tunnel %d: %v", perConn, i, err)
			}
			tun.Close()
		}
		_, err := openTarget(t, p, tunnel.KindTCP, echo.String(), &other)
		wantStatus(t, err, http.StatusProxyAuthRequired, masque.StatusHTTPRequestDenied)
	}
}

// Proxy-Status names the proxy with a Structured Field token; anything else
// would make every error response's header malformed.
func TestNewIdentity(t *testing.T) {
	for id, ok := range map[string]bool{
		"proxy.example.net": true, "masqued-2": true, "*edge:1/a": true, "A": true,
		"2proxy": false, "my proxy": false, `"q"`: false, "proxy;x=1": false, "prøxy": false, "-x": false,
	} {
		p, err := tunnel.New(tunnel.Config{Identity: id})
		if (err == nil) != ok {
			t.Errorf("identity %q: err %v, want ok %v", id, err, ok)
		}
		if ok && p != nil && p.Identity() != id {
			t.Errorf("identity %q became %q", id, p.Identity())
		}
	}
}

func TestNewDefaults(t *testing.T) {
	p, err := tunnel.New(tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity() != "masqued" || p.Template().String() != masque.DefaultUDPTemplate {
		t.Fatalf("identity %q, template %q", p.Identity(), p.Template())
	}
	l := p.Limits()
	if l.MaxTunnels != 0 || l.MaxTunnelsPerConn != 10000 || l.IdleTimeout.Minutes() != 5 || l.DialTimeout.Seconds() != 10 || l.MaxUDPPayload != 16384 {
		t.Fatalf("default limits %+v", l)
	}
	p, err = tunnel.New(tunnel.Config{Limits: tunnel.Limits{MaxUDPPayload: 100000}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Limits().MaxUDPPayload; got != 65527 {
		t.Fatalf("MaxUDPPayload capped at %d, want 65527", got)
	}
}
