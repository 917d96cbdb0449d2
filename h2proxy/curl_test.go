package h2proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/masqued/masqued/internal/testnet"
)

// recordingOrigin is an origin that remembers the requests it got.
type recordingOrigin struct {
	*httptest.Server
	mu  sync.Mutex
	got []*http.Request
}

func newOrigin(t *testing.T, tls bool) *recordingOrigin {
	o := &recordingOrigin{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.got = append(o.got, r.Clone(r.Context()))
		o.mu.Unlock()
		io.WriteString(w, "origin saw "+r.Method+" "+r.URL.Path)
	})
	o.Server = httptest.NewUnstartedServer(h)
	if tls {
		o.TLS = testnet.NewCert(t).ServerTLS()
		o.StartTLS()
	} else {
		o.Start()
	}
	t.Cleanup(o.Close)
	return o
}

func (o *recordingOrigin) requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.got...)
}

// TestCurl drives the front with Debian's curl, a client we did not write:
// CONNECT over HTTP/1.1 for https:// (and for http:// with --proxytunnel),
// absolute-form forwarding for http://.
func TestCurl(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	plain, secure := newOrigin(t, false), newOrigin(t, true)
	proxyArgs := []string{"--proxy", p.URL, "--proxy-cacert", p.CertFile, "--cacert", p.CertFile}
	for _, tc := range []struct {
		name     string
		args     []string
		origin   *recordingOrigin
		frontTCP float64 // tunnels the front opened so far
	}{
		{"https via CONNECT", []string{secure.URL + "/s"}, secure, 1},
		{"http forwarded", []string{"--proxy-user", "user:secret", "-H", "X-Forwarded-For: 192.0.2.1", plain.URL + "/p"}, plain, 2},
		{"http via CONNECT", []string{"--proxytunnel", plain.URL + "/t"}, plain, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.origin.requests())
			out := testnet.Curl(t, append(proxyArgs, tc.args...)...)
			path := tc.args[len(tc.args)-1]
			path = path[strings.LastIndex(path, "/"):]
			if out != "origin saw GET "+path {
				t.Fatalf("curl printed %q", out)
			}
			reqs := tc.origin.requests()
			if len(reqs) != n+1 {
				t.Fatalf("origin got %d requests, want %d", len(reqs), n+1)
			}
			if h := reqs[n].Header; h.Get("Proxy-Authorization") != "" || h.Get("X-Forwarded-For") != "" {
				t.Errorf("origin saw Proxy-Authorization %q, X-Forwarded-For %q: the proxy must drop both",
					h.Get("Proxy-Authorization"), h.Get("X-Forwarded-For"))
			}
			// curl speaks HTTP/1.1 to a proxy.
			if got := p.metric(t, "masqued_tunnels_total", "front", "h1", "kind", "tcp"); got != tc.frontTCP {
				t.Errorf("masqued_tunnels_total{front=h1,kind=tcp} = %v, want %v: the request did not go through the proxy", got, tc.frontTCP)
			}
		})
	}
}

// TestForwardedResponseIsTheOrigins checks that a forwarded response does not
// get the proxy's Alt-Svc, which would advertise HTTP/3 for the origin.
func TestForwardedResponseIsTheOrigins(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	origin := newOrigin(t, false)
	proxyURL, _ := url.Parse(p.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: testnet.NewCert(t).ClientTLS()}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(origin.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Alt-Svc") != "" || len(origin.requests()) != 1 {
		t.Fatalf("%s, Alt-Svc %q, origin saw %d requests; want the origin's 200 without Alt-Svc", resp.Status, resp.Header.Get("Alt-Svc"), len(origin.requests()))
	}
}

func TestAddressedToSelf(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4433}
	for _, tc := range []struct {
		host, sni string
		want      bool
	}{
		{"127.0.0.1:4433", "", true},
		{"127.0.0.1:8080", "", false}, // an origin on the proxy's IP
		{"127.0.0.1", "", false},      // port 443
		{"proxy.example:443", "proxy.example", true},
		{"PROXY.example", "proxy.example", true},
		{"origin.example", "proxy.example", false},
		{"", "", true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = tc.host
		r.TLS = &tls.ConnectionState{ServerName: tc.sni}
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local)))
		if got := addressedToSelf(r); got != tc.want {
			t.Errorf("Host %q, SNI %q: addressedToSelf = %v, want %v", tc.host, tc.sni, got, tc.want)
		}
	}
}
