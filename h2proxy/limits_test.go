package h2proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

func TestPerConnectionLimit(t *testing.T) {
	p := startProxy(t, "127.0.0.1", func(c *tunnel.Config, _ *Server) { c.Limits.MaxTunnelsPerConn = 1 })
	echo := testnet.TCPEcho(t, "127.0.0.1")
	c := p.dial(t, h2.Config{})
	first, err := c.DialTCP(testContext(t), echo.String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DialTCP(testContext(t), echo.String())
	var pe *proxyconn.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second tunnel on the connection: %v, want 429", err)
	}
	// Another connection has its own allowance, and closing frees the slot.
	if conn, err := p.dial(t, h2.Config{}).DialTCP(testContext(t), echo.String()); err != nil {
		t.Fatalf("tunnel on a second connection: %v", err)
	} else {
		conn.Close()
	}
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := c.DialTCP(testContext(t), echo.String())
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot was not freed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseEndsTunnels checks that Close ends open tunnels of both kinds of
// connection, the hijacked HTTP/1.1 ones included, and Shutdown waits for
// them until its context ends.
func TestCloseEndsTunnels(t *testing.T) {
	for _, stop := range []string{"close", "shutdown"} {
		t.Run(stop, func(t *testing.T) {
			p := startProxy(t, "127.0.0.1")
			echo := testnet.TCPEcho(t, "127.0.0.1")
			var conns []io.ReadCloser
			for _, m := range modes {
				conn, err := p.dial(t, m.cfg).DialTCP(testContext(t), echo.String())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, conn)
			}
			if stop == "close" {
				p.srv.Close()
			} else {
				// The tunnels stay open, so Shutdown returns only when its
				// context ends, with the context's error.
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				err := p.srv.Shutdown(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown returned %v, want the context's deadline exceeded", err)
				}
				p.srv.Close()
			}
			for i, conn := range conns {
				done := make(chan error, 1)
				go func() { _, err := io.ReadAll(conn); done <- err }()
				select {
				case <-done:
				case <-time.After(5 * time.Second): // only catches a tunnel left open: it ends at once
					t.Fatalf("%s tunnel still open after %s", modes[i].name, stop)
				}
				conn.Close()
			}
		})
	}
}

// TestConnectionsCounted checks masqued_connections_active for the TCP front:
// an HTTP/2 connection counts (as front h2) until it closes, a hijacked
// HTTP/1.1 one (as front h1) until its tunnel ends.
func TestConnectionsCounted(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	echo := testnet.TCPEcho(t, "127.0.0.1")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			active := func() float64 { return p.metric(t, "masqued_connections_active", "front", m.front) }
			waitFor := func(want float64) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for active() != want {
					if time.Now().After(deadline) {
						t.Fatalf("masqued_connections_active{front=%s} = %v, want %v", m.front, active(), want)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := h2.Dial(ctx, p.URL, h2.Config{TLSConfig: testnet.NewCert(t).ClientTLS(), HTTP1: m.cfg.HTTP1})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := c.DialTCP(ctx, echo.String())
			if err != nil {
				t.Fatal(err)
			}
			waitFor(1)
			conn.Close()
			c.Close()
			waitFor(0)
			if total := p.metric(t, "masqued_connections_total", "front", m.front); total != 1 {
				t.Errorf("masqued_connections_total{front=%s} = %v, want 1", m.front, total)
			}
		})
	}
}
