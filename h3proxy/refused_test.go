package h3proxy

import (
	"errors"
	"net/http"
	"testing"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/testnet"
)

// TestTargetRefused: a UDP tunnel whose target refuses its first packet
// (ICMP port unreachable) ends with a reset that the client reads as a
// *proxyconn.TargetRefusedError, in datagram and in capsule mode, and the
// proxy counts it as connection_refused.
func TestTargetRefused(t *testing.T) {
	target := testnet.ClosedUDP(t, testnet.IPv4)
	testnet.SkipWithoutICMP(t, target)
	p := startProxy(t, testnet.IPv4)
	for i, mode := range []struct {
		name string
		cfg  h3.Config
	}{{"datagrams", h3.Config{}}, {"capsules", h3.Config{DisableDatagrams: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			u, err := p.dial(t, mode.cfg).ListenUDP(testContext(t), target)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			testnet.ExpectRefused(t, u, func(e *proxyconn.TargetRefusedError) bool { return e.Target == target })
			eventually(t, "a connection_refused tunnel error", func() bool {
				return p.metric(t, "masqued_tunnel_errors_total", "front", "h3", "proxy_status", "connection_refused") == float64(i+1)
			})
		})
	}
}

// TestTargetRefusedOrigin: HTTP/3 to a refusing target through the tunnel
// fails with an error that holds the TargetRefusedError.
func TestTargetRefusedOrigin(t *testing.T) {
	target := testnet.ClosedUDP(t, testnet.IPv4)
	testnet.SkipWithoutICMP(t, target)
	p := startProxy(t, testnet.IPv4)
	u, err := p.dial(t, h3.Config{}).ListenUDP(testContext(t), target)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tr := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
	defer tr.Close()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, "https://"+target+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip succeeded")
	}
	var refused *proxyconn.TargetRefusedError
	var silent *proxyconn.SilentTargetError
	if !errors.As(err, &refused) || errors.As(err, &silent) {
		t.Fatalf("RoundTrip = %v, want a TargetRefusedError and no SilentTargetError", err)
	}
}
