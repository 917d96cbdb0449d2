package localproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
)

func TestHTTPProxyCurl(t *testing.T) {
	e := start(t, testnet.IPv4, true, nil)
	plain, tlsOrigin := newOrigin(t, false), newOrigin(t, true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, testnet.NewCert(t).PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	plainPort := strconv.Itoa(plain.Listener.Addr().(*net.TCPAddr).Port)
	tlsPort := strconv.Itoa(tlsOrigin.Listener.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name, url string
		o         *origin
		target    string
		args      []string
	}{
		{"absolute-form", "http://127.0.0.1:" + plainPort + "/plain", plain, "tcp 127.0.0.1:" + plainPort, nil},
		{"absolute-form name", "http://localhost:" + plainPort + "/name", plain, "tcp localhost:" + plainPort, nil},
		{"connect", "https://localhost:" + tlsPort + "/tls", tlsOrigin, "tcp localhost:" + tlsPort, []string{"--cacert", ca}},
		{"connect http2", "https://127.0.0.1:" + tlsPort + "/h2", tlsOrigin, "tcp 127.0.0.1:" + tlsPort, []string{"-k", "--http2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(tc.url)
			got := testnet.Curl(t, append(tc.args, "-x", "http://"+e.httpAddr, tc.url)...)
			if got != "hello "+u.Path {
				t.Errorf("body %q", got)
			}
			if !slices.Contains(tc.o.arrived(), u.Path) {
				t.Errorf("the origin saw %q, not %s", tc.o.arrived(), u.Path)
			}
			if !slices.Contains(e.tun.seen(), tc.target) {
				t.Errorf("tunnels %q, want %q among them", e.tun.seen(), tc.target)
			}
		})
	}
}

func TestHTTPProxyHeaders(t *testing.T) {
	e := start(t, testnet.IPv4, true, nil)
	o := newOrigin(t, false)
	proxyURL, _ := url.Parse("http://" + e.httpAddr)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(testnet.Context(t, 10*time.Second), http.MethodGet, o.URL+"/h", nil)
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Proxy-Foo", "bar")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("X-Kept", "1")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "hello /h" {
		t.Fatalf("%s %q", resp.Status, b)
	}
	h := o.lastHeader()
	for _, k := range []string{"Proxy-Authorization", "Proxy-Foo", "X-Hop", "X-Forwarded-For", "Forwarded"} {
		if v, ok := h[k]; ok {
			t.Errorf("the origin got %s: %q", k, v)
		}
	}
	if h.Get("X-Kept") != "1" {
		t.Errorf("the origin lost X-Kept: %v", h)
	}
}

// rawRequest sends req on a new connection to addr and returns the
// response, with its body read.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, req) // an oversized request may not be read to its end
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHTTPProxyBadInput(t *testing.T) {
	e := start(t, testnet.IPv4, true, func(e *env) { e.httpSrv.MaxHeaderBytes = 4096 })
	o := newOrigin(t, false)
	lc := testnet.TCP(t, testnet.IPv4)
	refused := lc.Addr().String()
	lc.Close()
	for _, tc := range []struct {
		name, req   string
		status      int
		body, proxy string // in the body and Proxy-Status
	}{
		{"origin-form", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "this is a proxy", ""},
		{"https absolute-form", "GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, `for "https://" use CONNECT`, ""},
		{"ftp", "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "http:// URLs only", ""},
		{"connect without port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "CONNECT needs host:port", ""},
		{"connect port 0", "CONNECT example.com:0 HTTP/1.1\r\nHost: example.com:0\r\n\r\n", 400, "bad port", ""},
		{"connect port name", "CONNECT example.com:http HTTP/1.1\r\nHost: example.com:http\r\n\r\n", 400, "", ""}, // net/http refuses it
		{"connect refused", "CONNECT " + refused + " HTTP/1.1\r\nHost: " + refused + "\r\n\r\n", 502, "refused the tunnel", "error=connection_refused"},
		{"get refused", "GET http://" + refused + "/ HTTP/1.1\r\nHost: " + refused + "\r\n\r\n", 502, "refused the tunnel", "error=connection_refused"},
		{"oversized header", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "", ""},
		{"garbage", "NOT HTTP\r\n\r\n", 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, e.httpAddr, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s, want %d: %s", resp.Status, tc.status, body)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body %q lacks %q", body, tc.body)
			}
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, tc.proxy) {
				t.Errorf("Proxy-Status %q lacks %q", ps, tc.proxy)
			}
		})
	}
	t.Run("a good request after", func(t *testing.T) {
		host := o.Listener.Addr().String()
		resp, body := rawRequest(t, e.httpAddr, "GET http://"+host+"/after HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello /after" {
			t.Fatalf("%s %q", resp.Status, body)
		}
	})
}

func TestHTTPProxyPolicyRefusal(t *testing.T) {
	e := start(t, testnet.IPv4, false, nil)
	host := newOrigin(t, false).Listener.Addr().String()
	for _, req := range []string{
		"CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n",
		"GET http://" + host + "/ HTTP/1.1\r\nHost: " + host + "\r\n\r\n",
	} {
		resp, body := rawRequest(t, e.httpAddr, req)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Proxy-Status"), "destination_ip_prohibited") {
			t.Errorf("%s, Proxy-Status %q: %s", resp.Status, resp.Header.Get("Proxy-Status"), body)
		}
	}
}
