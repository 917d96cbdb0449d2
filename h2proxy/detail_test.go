package h2proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"golang.org/x/net/http2"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// detailDialer has something to tell every client it dials for.
type detailDialer struct{ tunnel.NetDialer }

func (d *detailDialer) DialDetail(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, string, error) {
	c, err := d.Dial(ctx, network, addrs, r)
	return c, "hint ignored", err
}

// TestSuccessCarriesDetails checks that a dialer's details reach the client
// on the 200 (HTTP/2) and on the hijacked 200 and 101 (HTTP/1.1).
func TestSuccessCarriesDetails(t *testing.T) {
	p := startProxy(t, "127.0.0.1", func(c *tunnel.Config, _ *Server) { c.Dialer = &detailDialer{} })
	const want = `masqued; details="hint ignored"`
	echo := testnet.TCPEcho(t, "127.0.0.1")

	t.Run("h2", func(t *testing.T) {
		cfg := testnet.NewCert(t).ClientTLS()
		cfg.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", p.Addr.String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := (&http2.Transport{}).NewClientConn(conn) //lint:ignore SA1019 a raw HTTP/2 client, to see the response header
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		pr, pw := io.Pipe()
		defer pw.Close()
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: p.Addr.String()},
			Host: echo.String(), Header: http.Header{}, Body: pr, ContentLength: -1}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Proxy-Status") != want || resp.Header.Get("Alt-Svc") == "" {
			t.Fatalf("%s, Proxy-Status %q, Alt-Svc %q; want 200 with %q and Alt-Svc", resp.Status, resp.Header.Get("Proxy-Status"), resp.Header.Get("Alt-Svc"), want)
		}
	})
	for _, tc := range []struct{ name, request string }{
		{"http1 connect", fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", echo)},
		{"http1 upgrade", fmt.Sprintf("GET /.well-known/masque/udp/127.0.0.1/%d/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n",
			testnet.UDPEcho(t, "127.0.0.1").Port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawH1(t, p)
			io.WriteString(conn, tc.request)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode/100 > 2 || resp.Header.Get("Proxy-Status") != want || resp.Header.Get("Alt-Svc") == "" {
				t.Fatalf("%s, Proxy-Status %q, Alt-Svc %q; want success with %q and Alt-Svc", resp.Status, resp.Header.Get("Proxy-Status"), resp.Header.Get("Alt-Svc"), want)
			}
		})
	}
}
