package h3proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

func TestTunnelLimits(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	tests := []struct {
		name   string
		limits tunnel.Limits
		status int
	}{
		{"per connection", tunnel.Limits{MaxTunnelsPerConn: 2}, http.StatusTooManyRequests},
		{"total", tunnel.Limits{MaxTunnels: 2}, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, testnet.IPv4, withLimits(tt.limits))
			c := p.dial(t, h3.Config{})
			ctx := testContext(t)
			a, err := c.DialTCP(ctx, echo.String())
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.DialTCP(ctx, echo.String())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			_, err = c.DialTCP(ctx, echo.String())
			var pe *h3.ProxyError
			if !errors.As(err, &pe) || pe.StatusCode != tt.status || !strings.Contains(pe.ProxyStatus, "error=connection_limit_reached") {
				t.Fatalf("third tunnel: got %v, want %d connection_limit_reached", err, tt.status)
			}
			a.Close()
			eventually(t, "a slot to free up", func() bool { return p.metric(t, "masqued_tunnels_active") == 1 })
			d, err := c.DialTCP(ctx, echo.String())
			if err != nil {
				t.Fatalf("after closing one: %v", err)
			}
			d.Close()
		})
	}
}

// TestIdleTimeout: of two tunnels, the one with no traffic either way is
// closed for being idle, and the client sees its stream end, while the one
// with traffic stays open. When exactly the timeout fires is the tunnel
// core's fake-clock test; here the busy tunnel's pings only need to come
// closer together than the timeout (a fiftieth of it). 2 s, because a
// -race run beside other busy processes has been seen to stall the busy
// tunnel's pings for more than half a second.
func TestIdleTimeout(t *testing.T) {
	const idle = 2 * time.Second
	echo := testnet.TCPEcho(t, testnet.IPv4)
	p := startProxy(t, testnet.IPv4, withLimits(tunnel.Limits{IdleTimeout: idle}))
	c := p.dial(t, h3.Config{})
	quiet, err := c.DialTCP(testContext(t), echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	busy, err := c.DialTCP(testContext(t), echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	quietEnded := make(chan error, 1)
	go func() { _, err := io.ReadAll(quiet); quietEnded <- err }()
	buf := make([]byte, 4)
	ping := func() {
		t.Helper()
		busy.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := busy.Write([]byte("ping")); err != nil {
			t.Fatalf("the busy tunnel: %v", err)
		}
		if _, err := io.ReadFull(busy, buf); err != nil {
			t.Fatalf("the busy tunnel: %v", err)
		}
	}
	quiet.SetReadDeadline(time.Now().Add(20 * idle)) // only catches an idle timeout that never fires
pinging:
	for {
		select {
		case err := <-quietEnded:
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("idle tunnel: %v, want a reset", err)
			}
			break pinging
		case <-time.After(idle / 50):
			ping()
		}
	}
	ping() // the busy tunnel still carries traffic
	if got := p.metric(t, "masqued_limit_hits_total", "limit", tunnel.LimitIdle); got != 1 {
		t.Errorf("%v tunnels closed for being idle, want the quiet one", got)
	}
	busy.SetReadDeadline(time.Now().Add(20 * idle))
	if _, err := io.ReadAll(busy); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the busy tunnel, once idle: %v, want a reset", err)
	}
	eventually(t, "the tunnels to close", func() bool { return p.metric(t, "masqued_tunnels_active") == 0 })
}

// TestHalfClose: the client's FIN reaches the target, which can still answer
// before its own FIN comes back.
func TestHalfClose(t *testing.T) {
	l := testnet.TCP(t, testnet.IPv4)
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		req, err := io.ReadAll(c) // until the client's FIN
		if err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("got " + string(req)))
		served <- err
	}()
	p := startProxy(t, testnet.IPv4)
	c := p.dial(t, h3.Config{})
	conn, err := c.DialTCP(testContext(t), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("hello"))
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got hello" {
		t.Errorf("got %q", got)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestCloseBeforeServe: a Server closed before Serve runs must make Serve
// return at once, so a signal that arrives early cannot hang the daemon.
func TestCloseBeforeServe(t *testing.T) {
	p, err := tunnel.New(tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Proxy: p, TLSConfig: testnet.NewCert(t).ServerTLS()}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(testnet.UDP(t, testnet.IPv4)) }()
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve after Close: %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve after Close did not return")
	}
}

// TestCloseDuringBlockedWrite: as with a net.TCPConn, closing a TCP tunnel
// from another goroutine cuts short a Write blocked on a target that stopped
// reading, without a data race in quic-go.
func TestCloseDuringBlockedWrite(t *testing.T) {
	l := testnet.TCP(t, testnet.IPv4)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // never read from
		}
		close(accepted)
	}()
	p := startProxy(t, testnet.IPv4)
	c := p.dial(t, h3.Config{})
	conn, err := c.DialTCP(testContext(t), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if target, ok := <-accepted; ok {
		defer target.Close()
	}
	// One Write larger than all that lies between it and the target (the
	// proxy's stream window, at most 16 MiB, and the sockets' buffers): once
	// the proxy has relayed some of it, the Write is under way, and it stays
	// blocked on flow control until Close.
	wrote := make(chan error, 1)
	go func() { _, err := conn.Write(make([]byte, 64<<20)); wrote <- err }()
	eventually(t, "the proxy to relay the start of the Write", func() bool {
		return p.metric(t, "masqued_tunnel_bytes_total", "direction", "up") > 0
	})
	if err := conn.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("a Write the target never read completed")
		}
	case <-time.After(10 * time.Second): // a hang bound: Close cuts the Write short at once
		t.Fatal("Close did not unblock the Write")
	}
}
