package client

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/internal/tunnel"
)

// TestSessionRedials stops the proxy under a session and starts it again
// on the same port: the next tunnel request must dial a new connection.
func TestSessionRedials(t *testing.T) {
	l := testnet.TCP(t, "127.0.0.1")
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	p, err := tunnel.New(tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr}}})
	if err != nil {
		t.Fatal(err)
	}
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
