package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// startProxy serves the TCP front on a loopback port and, with h3, HTTP/3 on
// the same UDP port. Without h3 a UDP socket holds the port and drops every
// packet: QUIC is black-holed, as on a network that blocks UDP.
func startProxy(t *testing.T, h3 bool, configure ...func(*tunnel.Config)) string {
	t.Helper()
	var pc *net.UDPConn
	var tl net.Listener
	for {
		pc = testnet.UDP(t, "127.0.0.1")
		var err error
		if tl, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr}}}
	for _, f := range configure {
		f(&cfg)
	}
	p, err := tunnel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := testnet.NewCert(t).ServerTLS()
	h2 := &h2proxy.Server{Proxy: p, TLSConfig: tlsConf}
	serve(t, h2.Serve, tl, h2.Close)
	if h3 {
		s := &h3proxy.Server{Proxy: p, TLSConfig: tlsConf}
		if len(cfg.Policy.RelayTo) > 0 {
			s.QUICConfig = h3proxy.RelayQUICConfig()
		}
		serve(t, s.Serve, net.PacketConn(pc), s.Close)
	}
	return "https://" + addr.String()
}

func serve[L any](t *testing.T, serve func(L) error, l L, closeFn func() error) {
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	t.Cleanup(func() {
		closeFn()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
}

// dial dials proxyURL with d. Its 10 s deadline is over thirty times the
// fallback delay: it only catches a dial that never falls back.
func dial(t *testing.T, d *Dialer, proxyURL string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo checks a TCP and a UDP tunnel on c.
func echo(t *testing.T, c *Conn) {
	t.Helper()
	ctx := testnet.Context(t, 10*time.Second)
	conn, err := c.DialTCP(ctx, testnet.TCPEcho(t, "127.0.0.1").String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	u, err := c.ListenUDP(ctx, testnet.UDPEcho(t, "127.0.0.1").String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	u.WriteTo([]byte("ping"), nil)
	buf := make([]byte, 16)
	if n, _, err := u.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("UDP echo %q, %v", buf[:n], err)
	}
}

func TestPrefersHTTP3(t *testing.T) {
	proxy := startProxy(t, true)
	d := &Dialer{TLSConfig: testnet.NewCert(t).ClientTLS()}
	c := dial(t, d, proxy)
	if c.Transport() != HTTP3 || c.FallbackReason() != nil {
		t.Fatalf("transport %q (%v), want h3", c.Transport(), c.FallbackReason())
	}
	echo(t, c)
}

// TestFallsBackWhenUDPBlocked is the hotel Wi-Fi case: QUIC packets vanish,
// and the client must complete over HTTP/2 after racing, then go straight to
// TCP while it remembers (no race, so no FallbackReason), and race again
// after Forget. How soon it falls back is the fallback delay's matter; the
// test only bounds a hang (dial's deadline).
func TestFallsBackWhenUDPBlocked(t *testing.T) {
	proxy := startProxy(t, false)
	d := &Dialer{TLSConfig: testnet.NewCert(t).ClientTLS()}
	c := dial(t, d, proxy)
	if c.Transport() != HTTP2 || c.FallbackReason() == nil {
		t.Fatalf("transport %q, fallback reason %v; want h2 after a race", c.Transport(), c.FallbackReason())
	}
	echo(t, c)

	if c2 := dial(t, d, proxy); c2.Transport() != HTTP2 || c2.FallbackReason() != nil {
		t.Fatalf("second dial: %q, fallback reason %v; want h2 from memory, without a race", c2.Transport(), c2.FallbackReason())
	}
	d.Forget()
	if c3 := dial(t, d, proxy); c3.Transport() != HTTP2 || c3.FallbackReason() == nil {
		t.Fatalf("after Forget: %q, fallback reason %v; want h2 after a new race", c3.Transport(), c3.FallbackReason())
	}
}

func TestForcedTransport(t *testing.T) {
	proxy := startProxy(t, true)
	for _, tr := range []Transport{HTTP3, HTTP2, HTTP1} {
		t.Run(string(tr), func(t *testing.T) {
			c := dial(t, &Dialer{TLSConfig: testnet.NewCert(t).ClientTLS(), Transport: tr}, proxy)
			if c.Transport() != tr {
				t.Fatalf("transport %q, want %q", c.Transport(), tr)
			}
			echo(t, c)
		})
	}
}

// Dialer.Header goes out with every tunnel request, TCP and UDP, over each
// transport, and cannot replace the client's own Proxy-Authorization.
func TestHeader(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	proxy := startProxy(t, true, func(c *tunnel.Config) {
		c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, r.Header.Get("Sec-CH-Geohash")+" "+r.Header.Get("Proxy-Authorization"))
			return nil
		})
	})
	for _, tr := range []Transport{HTTP3, HTTP2, HTTP1} {
		t.Run(string(tr), func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			d := &Dialer{TLSConfig: testnet.NewCert(t).ClientTLS(), Transport: tr,
				Header: http.Header{"sec-ch-geohash": {"u4pruy"}, "Proxy-Authorization": {"Basic forged"}}}
			c := dial(t, d, proxy)
			echo(t, c)
			mu.Lock()
			defer mu.Unlock()
			if want := []string{"u4pruy ", "u4pruy "}; !slices.Equal(seen, want) {
				t.Fatalf("the proxy saw %q (hint, authorization), want %q", seen, want)
			}
		})
	}
}

func TestBothFail(t *testing.T) {
	l := testnet.TCP(t, "127.0.0.1")
	addr := l.Addr().String()
	l.Close() // nothing listens on TCP; nothing on UDP either
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := (&Dialer{FallbackDelay: 10 * time.Millisecond}).Dial(ctx, "https://"+addr)
	if err == nil {
		t.Fatal("Dial succeeded with no proxy")
	}
}

func TestParseTransport(t *testing.T) {
	for in, want := range map[string]Transport{"auto": Auto, "": Auto, "h3": HTTP3, "h2": HTTP2, "h1": HTTP1, "http/1.1": HTTP1} {
		if got, err := ParseTransport(in); err != nil || got != want {
			t.Errorf("ParseTransport(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseTransport("h4"); err == nil {
		t.Error("ParseTransport(h4) succeeded")
	}
}
