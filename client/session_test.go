package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// newCore returns a tunnel core for a proxy at addr that allows loopback
// targets.
func newCore(t *testing.T, addr netip.AddrPort) *tunnel.Proxy {
	t.Helper()
	p, err := tunnel.New(tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSessionRedials stops the proxy under a session and starts it again
// on the same port: the next tunnel request must dial a new connection.
func TestSessionRedials(t *testing.T) {
	l := testnet.TCP(t, "127.0.0.1")
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	p := newCore(t, addr)
	cert := testnet.NewCert(t)
	start := func(l net.Listener) (stop func()) {
		s := &h2proxy.Server{Proxy: p, TLSConfig: cert.ServerTLS()}
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		return func() {
			s.Close()
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	stop := start(l)
	ctx := testnet.Context(t, 20*time.Second)
	s, err := NewSession(ctx, &Dialer{TLSConfig: cert.ClientTLS(), Transport: HTTP2}, "https://"+addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	echo := testnet.TCPEcho(t, "127.0.0.1")
	open := func() {
		t.Helper()
		c, err := s.DialTCP(ctx, echo.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	open()
	first := s.Conn()

	stop() // the proxy goes away, and with it the session's connection
	deadline := time.Now().Add(5 * time.Second)
	for first.Usable() {
		if time.Now().After(deadline) {
			t.Fatal("the connection stayed usable after the proxy closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l2, err := net.Listen("tcp", addr.String()) // the proxy is back
	if err != nil {
		t.Fatal(err)
	}
	defer start(l2)()
	open()
	if s.Conn() == first {
		t.Fatal("the session did not dial a new connection")
	}
	open() // and keeps the new one
}

// TestSessionHTTP3AfterGoAway restarts the proxy as masqued's drain does: the
// old process sends GOAWAY on its HTTP/3 connection and stops, the new one
// serves TCP a moment before QUIC. The session's redial in that gap lands on
// HTTP/2; once QUIC is back, tunnels must go over HTTP/3 again instead of
// staying on a remembered fallback.
func TestSessionHTTP3AfterGoAway(t *testing.T) {
	pc := testnet.UDP(t, "127.0.0.1")
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	p := newCore(t, addr)
	cert := testnet.NewCert(t)
	// stop ends a server with GOAWAY and waits for the client (drain), or
	// closes it at once.
	serveH3 := func() (stop func(drain bool)) {
		s := &h3proxy.Server{Proxy: p, TLSConfig: cert.ServerTLS()}
		pc.SetReadDeadline(time.Time{}) // the last server's close left one to unblock its reader
		done := make(chan error, 1)
		go func() { done <- s.Serve(pc) }()
		return func(drain bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if !drain {
				s.Close()
			} else if err := s.Shutdown(ctx); err != nil { // GOAWAY, then wait for the client
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	serveTCP := func() {
		l, err := net.Listen("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		s := &h2proxy.Server{Proxy: p, TLSConfig: cert.ServerTLS()}
		serve(t, s.Serve, l, s.Close)
	}
	stop := serveH3()
	ctx := testnet.Context(t, 60*time.Second)
	d := &Dialer{TLSConfig: cert.ClientTLS()}
	s, err := NewSession(ctx, d, "https://"+addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	echo := testnet.TCPEcho(t, "127.0.0.1")
	open := func() Transport {
		t.Helper()
		c, err := s.DialTCP(ctx, echo.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return s.Conn().Transport()
	}
	if tr := open(); tr != HTTP3 {
		t.Fatalf("first tunnel over %s, want h3", tr)
	}

	stop(true) // returns once the client has closed its connection after GOAWAY
	serveTCP()
	if tr := open(); tr != HTTP2 {
		t.Fatalf("tunnel while only TCP is served went over %s, want h2", tr)
	}
	if d.rememberedTCP(addr.String()) {
		t.Fatal("the redial after GOAWAY was remembered as HTTP/3 being blocked")
	}
	defer serveH3()(false) // at once: the gap's HTTP/3 attempt left a handshake to wait for
	// The first tunnel request after this starts an HTTP/3 attempt; later
	// ones move over. ctx bounds the wait against a hang (its 60 s are
	// hundreds of times a loopback handshake).
	for open() != HTTP3 {
		select {
		case <-ctx.Done():
			t.Fatal("tunnels stayed on HTTP/2 after the proxy served HTTP/3 again")
		case <-time.After(10 * time.Millisecond):
		}
	}
	open() // and the session keeps it
}
