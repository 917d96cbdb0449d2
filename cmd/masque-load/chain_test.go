package main

import (
	"strconv"
	"testing"

	"github.com/masqued/masqued/internal/promscrape"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// TestChain runs short loads through a two-hop chain, -proxy RELAY,EGRESS,
// over each transport: every operation succeeds, and each of the run's
// connections to the egress went through a tunnel of its own at the relay
// (CONNECT-UDP for HTTP/3, CONNECT for HTTP/2 and HTTP/1.1), which opened
// no tunnel to anything else. Over HTTP/1.1 every tunnel at the egress is a
// connection of its own, so there the relay opened one per tunnel. The
// runs go at once, as in TestSmoke.
func TestChain(t *testing.T) {
	const conns, tunnels = 2, 2
	cases := []struct {
		name, relayFront, relayKind string
		flags                       []string
		relay                       *proxytest.Proxy
		loadRun
	}{
		{name: "tcp over h3", relayFront: "h3", relayKind: "udp", flags: []string{"-mode", "tcp", "-via", "h3"}},
		{name: "h3 over h3", relayFront: "h3", relayKind: "udp", flags: []string{"-mode", "h3", "-via", "h3"}},
		{name: "udp over h2", relayFront: "h2", relayKind: "tcp", flags: []string{"-mode", "udp", "-via", "h2"}},
		{name: "setup over h2", relayFront: "h2", relayKind: "tcp", flags: []string{"-mode", "setup", "-via", "h2", "-rate", "100"}},
		{name: "tcp over h1", relayFront: "h1", relayKind: "tcp", flags: []string{"-mode", "tcp", "-via", "h1"}},
	}
	var runs []*loadRun
	for i := range cases {
		c := &cases[i]
		egress := proxytest.Start(t, testnet.IPv4, true)
		c.relay = proxytest.StartRelay(t, testnet.IPv4, egress)
		c.loadRun.args = append([]string{"-proxy", c.relay.URL + "," + egress.URL, "-ca", c.relay.CertFile + "," + egress.CertFile,
			"-c", strconv.Itoa(conns), "-t", strconv.Itoa(tunnels), "-d", "1s", "-warmup", "0s", "-json"}, c.flags...)
		runs = append(runs, &c.loadRun)
	}
	runAtOnce(t, runs)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cleanReport(t)
			mfs, err := c.relay.Registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			want := float64(conns)
			if c.relayFront == "h1" {
				want = conns * tunnels
			}
			if n := promscrape.Sum(mfs, "masqued_tunnels_total", "front", c.relayFront, "kind", c.relayKind); n != want {
				t.Errorf("the relay opened %v %s tunnels over %s, want one per connection to the egress: %v", n, c.relayKind, c.relayFront, want)
			}
			if all, errs := promscrape.Sum(mfs, "masqued_tunnels_total"), promscrape.Sum(mfs, "masqued_tunnel_errors_total"); all != want || errs != 0 {
				t.Errorf("the relay opened %v tunnels in all and refused or failed %v", all, errs)
			}
		})
	}
}
