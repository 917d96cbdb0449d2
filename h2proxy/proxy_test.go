package h2proxy

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/testnet"
)

func TestTCPTunnel(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		p := startProxy(t, host)
		echo := testnet.TCPEcho(t, host)
		for _, m := range modes {
			t.Run(host+"/"+m.name, func(t *testing.T) {
				c := p.dial(t, m.cfg)
				if got := c.Protocol(); got != m.protocol {
					t.Fatalf("Protocol() = %q, want %q", got, m.protocol)
				}
				conn, err := c.DialTCP(testContext(t), echo.String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				msg := bytes.Repeat([]byte("tunnel "), 100_000) // several flow-control windows
				go func() {
					conn.Write(msg)
					conn.(interface{ CloseWrite() error }).CloseWrite()
				}()
				got, err := io.ReadAll(conn)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
				}
			})
		}
	}
}

func TestUDPTunnel(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		p := startProxy(t, host)
		echo := testnet.UDPEcho(t, host)
		for _, m := range modes {
			t.Run(host+"/"+m.name, func(t *testing.T) {
				c := p.dial(t, m.cfg)
				u, err := c.ListenUDP(testContext(t), echo.String())
				if err != nil {
					t.Fatal(err)
				}
				defer u.Close()
				for _, msg := range []string{"one", "two", string(bytes.Repeat([]byte{7}, 1500))} {
					ping(t, u, msg)
				}
			})
		}
	}
}

// TestHTTP3ThroughCapsules runs QUIC inside DATAGRAM capsules inside HTTP/2
// (or HTTP/1.1): an HTTP/3 GET to an origin through a CONNECT-UDP tunnel on
// the TCP front.
func TestHTTP3ThroughCapsules(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	body := bytes.Repeat([]byte("h3 in h2 "), 50_000)
	origin := testnet.H3Origin(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := p.dial(t, m.cfg)
			ctx := testContext(t)
			u, err := c.ListenUDP(ctx, origin.String())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			h3 := proxyconn.NewOriginTransport(u, testnet.NewCert(t).ClientTLS(), nil)
			defer h3.Close()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+origin.String()+"/", nil)
			resp, err := h3.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("got %d bytes (%v), want %d", len(got), err, len(body))
			}
		})
	}
	for _, m := range modes {
		if n := p.metric(t, "masqued_tunnels_total", "front", m.front, "kind", "udp"); n != 1 {
			t.Errorf("masqued_tunnels_total{front=%s,kind=udp} = %v, want 1", m.front, n)
		}
	}
}

// TestAltSvcOnEveryResponse checks that refusals, too, point to HTTP/3.
func TestAltSvcOnEveryResponse(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	tr := &http.Transport{TLSClientConfig: testnet.NewCert(t).ClientTLS(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	for _, path := range []string{"/", "/.well-known/masque/udp/127.0.0.1/53/"} {
		req, _ := http.NewRequest(http.MethodGet, p.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.Header.Get("Alt-Svc") != `h3=":443"` || resp.StatusCode/100 != 4 {
			t.Errorf("GET %s: %s %s Alt-Svc %q, want HTTP/2 4xx with Alt-Svc", path, resp.Proto, resp.Status, resp.Header.Get("Alt-Svc"))
		}
	}
}
