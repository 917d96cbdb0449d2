package h3proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// udpRequest is a CONNECT-UDP request for a raw (already escaped) path.
func udpRequest(authority, rawPath string) *http.Request {
	path, _ := url.PathUnescape(rawPath)
	return &http.Request{
		Method: http.MethodConnect,
		Proto:  masque.ProtocolConnectUDP,
		Host:   authority,
		URL:    &url.URL{Scheme: "https", Host: authority, Path: path, RawPath: rawPath},
		Header: http.Header{"Capsule-Protocol": {"?1"}},
	}
}

func connectRequest(target string) *http.Request {
	return &http.Request{Method: http.MethodConnect, Host: target, URL: &url.URL{Host: target}, Header: http.Header{}}
}

// rawClient is an HTTP/3 connection to p that sends requests as they are
// given, for the malformed ones no client of ours would build.
type rawClient struct{ cc *http3.RawClientConn }

func (p *testProxy) dialRaw(t testing.TB) rawClient {
	t.Helper()
	tlsConf := testnet.NewCert(t).ClientTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	conn, err := quic.DialAddr(testContext(t), p.Addr.String(), tlsConf, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return rawClient{(&http3.Transport{EnableDatagrams: true}).NewRawClientConn(conn)}
}

// roundTrip sends req on a request stream of its own and returns the
// response, then ends the stream.
func (c rawClient) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	rs, err := c.cc.OpenRequestStream(ctx)
	if err != nil {
		return nil, err
	}
	defer rs.CancelWrite(quic.StreamErrorCode(http3.ErrCodeNoError))
	defer rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	if err := rs.SendRequestHeader(req.WithContext(ctx)); err != nil {
		return nil, err
	}
	return rs.ReadResponse()
}

// TestBadInput sends malformed and forbidden tunnel requests over real
// HTTP/3 and checks each gets its status and Proxy-Status, and that the
// connection keeps working afterwards.
func TestBadInput(t *testing.T) {
	echoTCP := testnet.TCPEcho(t, testnet.IPv4)
	echoUDP := testnet.UDPEcho(t, testnet.IPv4)
	p := startProxy(t, testnet.IPv4, safeByDefault(t))
	raw := p.dialRaw(t)
	self := p.Addr.String()
	tcpPort := strconv.Itoa(echoTCP.Port)
	udpPort := strconv.Itoa(echoUDP.Port)
	wk := "/.well-known/masque/udp/"

	tests := []struct {
		name   string
		req    *http.Request
		status int
		kind   string
	}{
		{"udp host with slash", udpRequest(self, wk+"ex%2Fa/443/"), 400, "http_request_error"},
		{"udp empty host", udpRequest(self, wk+"/443/"), 400, "http_request_error"},
		{"udp port 0", udpRequest(self, wk+"example.com/0/"), 400, "http_request_error"},
		{"udp port 65536", udpRequest(self, wk+"example.com/65536/"), 400, "http_request_error"},
		{"udp port not a number", udpRequest(self, wk+"example.com/dns/"), 400, "http_request_error"},
		{"udp path off template", udpRequest(self, "/masque/udp/example.com/443/"), 400, "http_request_error"},
		{"udp unknown protocol", func() *http.Request {
			r := udpRequest(self, wk+"example.com/443/")
			r.Proto = "connect-ip"
			return r
		}(), 400, "http_request_error"},
		{"missing :protocol (GET to template)", func() *http.Request {
			r := udpRequest(self, wk+"example.com/443/")
			r.Method, r.Proto = http.MethodGet, ""
			return r
		}(), 400, "http_request_error"},
		{"wrong method to template", func() *http.Request {
			r := udpRequest(self, wk+"example.com/443/")
			r.Method, r.Proto = http.MethodPost, ""
			return r
		}(), 400, "http_request_error"},
		{"wrong method elsewhere", func() *http.Request {
			r := udpRequest(self, "/index.html")
			r.Method, r.Proto = http.MethodPut, ""
			return r
		}(), 405, "http_request_error"},
		{"tcp no port", connectRequest("example.com"), 400, "http_request_error"},
		{"tcp port 0", connectRequest("example.com:0"), 400, "http_request_error"},
		{"tcp bad host", connectRequest("exa_mple..com:80"), 400, "http_request_error"},
		{"ssrf tcp 127.0.0.1", connectRequest("127.0.0.1:" + tcpPort), 403, "destination_ip_prohibited"},
		{"ssrf tcp 10.0.0.1", connectRequest("10.0.0.1:80"), 403, "destination_ip_prohibited"},
		{"ssrf tcp [::1]", connectRequest("[::1]:" + tcpPort), 403, "destination_ip_prohibited"},
		{"ssrf tcp [::ffff:127.0.0.1]", connectRequest("[::ffff:127.0.0.1]:" + tcpPort), 403, "destination_ip_prohibited"},
		{"ssrf tcp 169.254.169.254", connectRequest("169.254.169.254:80"), 403, "destination_ip_prohibited"},
		{"ssrf tcp localhost (name resolving to loopback)", connectRequest("localhost:" + tcpPort), 403, "destination_ip_prohibited"},
		{"ssrf tcp the proxy itself", connectRequest(self), 403, "destination_ip_prohibited"},
		{"ssrf udp 127.0.0.1", udpRequest(self, wk+"127.0.0.1/"+udpPort+"/"), 403, "destination_ip_prohibited"},
		{"ssrf udp [::1]", udpRequest(self, wk+"%3A%3A1/"+udpPort+"/"), 403, "destination_ip_prohibited"},
		{"ssrf udp ::ffff:10.0.0.1", udpRequest(self, wk+"%3A%3Affff%3A10.0.0.1/53/"), 403, "destination_ip_prohibited"},
		{"ssrf udp localhost", udpRequest(self, wk+"localhost/"+udpPort+"/"), 403, "destination_ip_prohibited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := raw.roundTrip(testContext(t), tt.req)
			if err != nil {
				t.Fatalf("got %v, want a %d refusal", err, tt.status)
			}
			ps := resp.Header.Get("Proxy-Status")
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tt.status, ps)
			}
			if !strings.HasPrefix(ps, "masqued; error="+tt.kind) {
				t.Errorf("Proxy-Status %q, want error=%s", ps, tt.kind)
			}
		})
	}
	if got := p.metric(t, "masqued_tunnel_errors_total"); got != float64(len(tests)) {
		t.Errorf("masqued_tunnel_errors_total = %v, want %d", got, len(tests))
	}
	// The connection survived all of that.
	if p.metric(t, "masqued_tunnels_active") != 0 {
		t.Error("refused requests left tunnels open")
	}
}

// TestUnreachableTargets checks the statuses for targets that exist in
// policy but not on the network.
func TestUnreachableTargets(t *testing.T) {
	p := startProxy(t, testnet.IPv4)
	c := p.dial(t, h3.Config{})
	closed := testnet.TCP(t, testnet.IPv4)
	addr := closed.Addr().String()
	closed.Close() // nothing listens there now

	_, err := c.DialTCP(testContext(t), addr)
	var pe *h3.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadGateway || !strings.Contains(pe.ProxyStatus, "error=connection_refused") {
		t.Fatalf("closed port: got %v, want 502 connection_refused", err)
	}
}

// fullListener returns the address of a loopback TCP listener whose accept
// queue is full, so that further connection attempts hang as they do to a
// black-holed host.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(testnet.IPv4, strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for range 4 { // fill the queue; the attempts beyond it time out
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

// TestDialTimeout: a target that never answers gets 504 after Limits'
// DialTimeout. The client gives up after 5 s, far beyond the 300 ms it
// sets, but short of the 10 s default: only a proxy that ignored the limit
// would leave the client's context to end first.
func TestDialTimeout(t *testing.T) {
	target := fullListener(t)
	p := startProxy(t, testnet.IPv4, withLimits(tunnel.Limits{DialTimeout: 300 * time.Millisecond}))
	c := p.dial(t, h3.Config{})
	_, err := c.DialTCP(testnet.Context(t, 5*time.Second), target)
	var pe *h3.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusGatewayTimeout || !strings.Contains(pe.ProxyStatus, "error=connection_timeout") {
		t.Fatalf("got %v, want 504 connection_timeout", err)
	}
}
