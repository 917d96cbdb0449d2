package h2proxy

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// TestTargetRefused: over HTTP/2 and HTTP/1.1, a UDP tunnel whose target
// refuses its first packet (ICMP port unreachable) ends in the way the
// client reads as a *proxyconn.TargetRefusedError, and the proxy counts it
// as connection_refused; a tunnel that ends otherwise (here, idle) gives
// net.ErrClosed, not a refusal.
func TestTargetRefused(t *testing.T) {
	target := testnet.ClosedUDP(t, testnet.IPv4)
	testnet.SkipWithoutICMP(t, target)
	echo := testnet.UDPEcho(t, testnet.IPv4)
	const idle = 200 * time.Millisecond
	withIdle := func(c *tunnel.Config, _ *Server) { c.Limits.IdleTimeout = idle }
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			p := startProxy(t, testnet.IPv4, withIdle)
			c := p.dial(t, mode.cfg)
			u, err := c.ListenUDP(testContext(t), target)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			testnet.ExpectRefused(t, u, func(e *proxyconn.TargetRefusedError) bool { return e.Target == target })
			hang := time.Now().Add(10 * time.Second) // the proxy counts as it closes the tunnel
			for p.metric(t, "masqued_tunnel_errors_total", "front", mode.front, "proxy_status", "connection_refused") != 1 {
				if time.Now().After(hang) {
					t.Fatal("no connection_refused tunnel error counted")
				}
				time.Sleep(10 * time.Millisecond)
			}

			quiet, err := c.ListenUDP(testContext(t), echo.String())
			if err != nil {
				t.Fatal(err)
			}
			defer quiet.Close()
			ping(t, quiet, "hello")
			quiet.SetReadDeadline(time.Now().Add(50 * idle)) // a hang bound only
			if _, _, err := quiet.ReadFrom(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrom of a tunnel closed for idling = %v, want net.ErrClosed", err)
			}
		})
	}
}
