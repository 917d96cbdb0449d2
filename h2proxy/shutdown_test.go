package h2proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// signalDialer is the core's NetDialer that tells the test when a tunnel
// request has reached its dial, so that Shutdown can start while the
// handler is on its way to Hijack.
type signalDialer struct {
	tunnel.NetDialer
	dialing chan struct{}
}

func (d *signalDialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, error) {
	select {
	case d.dialing <- struct{}{}:
	default:
	}
	return d.NetDialer.Dial(ctx, network, addrs, r)
}

// TestShutdownRacesHijack runs an HTTP/1.1 tunnel request into Shutdown,
// many times over. A handler between Hijack and track must not Add to the
// hijacked tunnels' WaitGroup while Shutdown waits on it (the race detector
// reports that), and once Shutdown has returned no tunnel may start: each
// request either gets a tunnel that Shutdown waits for, or is refused.
func TestShutdownRacesHijack(t *testing.T) {
	echo := testnet.TCPEcho(t, "127.0.0.1")
	for range 50 {
		dialer := &signalDialer{dialing: make(chan struct{}, 1)}
		p := startProxy(t, "127.0.0.1", func(c *tunnel.Config, _ *Server) { c.Dialer = dialer })
		c := p.dial(t, h2.Config{HTTP1: true})
		opened := make(chan error, 1)
		go func() {
			conn, err := c.DialTCP(testContext(t), echo.String())
			if err == nil {
				conn.Close() // the tunnel ends as soon as it is open
			}
			opened <- err
		}()
		select {
		case <-dialer.dialing: // sent before any tunnel can open
		case <-time.After(30 * time.Second): // a hang bound; dialling takes a round trip
			t.Fatal("the tunnel request never reached its dial")
		}
		// A generous bound: the one tunnel ends as soon as its client has it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		p.srv.mu.Lock()
		closed, running := p.srv.closed, len(p.srv.hijacked)
		p.srv.mu.Unlock()
		if !closed || running != 0 {
			t.Fatalf("after Shutdown: closed %v, %d hijacked tunnels running; want closed and none", closed, running)
		}
		<-opened // a tunnel or a refusal: both are right
	}
}
