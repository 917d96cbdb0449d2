package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass/ppserver"
	"github.com/masqued/masqued/tunnel"
)

// TestFetchThroughChain fetches through a relay and an egress proxy with
// each kind of tunnel and transport: QUIC in QUIC in QUIC, HTTP/3 in
// capsules over HTTP/2 in TLS in TLS, HTTP/2 in TLS in TLS in TLS. The relay
// opens one tunnel per fetch, to the egress; the egress one, to the origin.
func TestFetchThroughChain(t *testing.T) {
	egress := proxytest.Start(t, testnet.IPv4, true)
	relay := proxytest.StartRelay(t, testnet.IPv4, egress)
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	for i, tc := range []struct{ via, url, relayKind, egressKind string }{
		{"h3", h3, "udp", "udp"},
		{"udp,h2", h3, "tcp", "udp"},
		{"tcp,h2", https, "tcp", "tcp"},
	} {
		t.Run(tc.via, func(t *testing.T) {
			stdout, stderr, err := fetch(t, "-proxy", relay.URL+","+egress.URL, "-ca", ca, "-v", "-via", tc.via, "fetch", tc.url+"/")
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if stdout != string(body) {
				t.Fatalf("body %d bytes, want %d\n%s", len(stdout), len(body), stderr)
			}
			for _, want := range []string{"connected to relay " + relay.URL, "connected to egress proxy " + egress.URL, "through the relay"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("-v report lacks %q:\n%s", want, stderr)
				}
			}
			if n := relay.Metric(t, "masqued_tunnels_total", "kind", tc.relayKind); n != float64(countKind(i, tc.relayKind)) {
				t.Errorf("relay: %v %s tunnels after %d fetches", n, tc.relayKind, i+1)
			}
			if n := egress.Metric(t, "masqued_tunnels_total", "kind", tc.egressKind); n == 0 {
				t.Errorf("egress: no %s tunnel", tc.egressKind)
			}
		})
	}
	// The relay is no open proxy: asked for the origin itself, it refuses.
	if _, stderr, err := fetch(t, "-proxy", relay.URL, "-ca", ca, "fetch", h3+"/"); err == nil || !strings.Contains(err.Error(), "destination_ip_prohibited") ||
		!strings.Contains(err.Error(), "give it first in -proxy") {
		t.Errorf("the relay as a proxy: %v\n%s", err, stderr)
	}
}

// countKind is how many relay tunnels of kind TestFetchThroughChain's first
// i+1 fetches opened: h3 one UDP tunnel, the others one TCP tunnel each.
func countKind(i int, kind string) int {
	if kind == "udp" {
		return 1
	}
	return i
}

// TestChainTokensPerHop: a relay and an egress with issuers of their own;
// the client holds an account at each, and each hop gets its own tokens.
// Swapped, each hop gets the other's and refuses them.
func TestChainTokensPerHop(t *testing.T) {
	var pas [2]*ppserver.ProxyAuth
	for i := range pas {
		pa, err := ppserver.StartProxyAuth(ppserver.ProxyConfig{Listen: "127.0.0.1:0", TLSConfig: testnet.NewCert(t).ServerTLS(), StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pa.Close() })
		pas[i] = pa
	}
	egress := proxytest.Start(t, testnet.IPv4, true, func(c *tunnel.Config) { c.Auth = pas[1] })
	relay := proxytest.StartRelay(t, testnet.IPv4, egress, func(c *tunnel.Config) { c.Auth = pas[0] })
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	ca := caFile(t)
	pp := func(a, b *ppserver.ProxyAuth) []string {
		return []string{"-account-key", a.KeyFile + "," + b.KeyFile, "-attester", a.AttesterURL + "," + b.AttesterURL,
			"-issuer-directory", a.DirectoryURL + "," + b.DirectoryURL}
	}
	args := append([]string{"-proxy", relay.URL + "," + egress.URL, "-ca", ca}, pp(pas[0], pas[1])...)
	if stdout, stderr, err := fetch(t, append(args, "fetch", h3+"/")...); err != nil || stdout != string(body) {
		t.Fatalf("%v, %d bytes\n%s", err, len(stdout), stderr)
	}
	if n := relay.Metric(t, "masqued_auth_total", "result", tunnel.AuthAdmitted); n != 1 {
		t.Errorf("relay admitted %v requests, want 1", n)
	}
	if n := egress.Metric(t, "masqued_auth_total", "result", tunnel.AuthAdmitted); n != 1 {
		t.Errorf("egress admitted %v requests, want 1", n)
	}
	swapped := append([]string{"-proxy", relay.URL + "," + egress.URL, "-ca", ca}, pp(pas[1], pas[0])...)
	// The relay's challenge names an issuer the egress's directory does
	// not list, so the client mints nothing for it.
	if _, stderr, err := fetch(t, append(swapped, "fetch", h3+"/")...); err == nil || !strings.Contains(err.Error(), "no usable PrivateToken challenge") {
		t.Errorf("with each hop's account swapped: %v\n%s", err, stderr)
	}
	for name, p := range map[string]*proxytest.Proxy{"relay": relay, "egress": egress} {
		if n := p.Metric(t, "masqued_auth_total", "result", tunnel.AuthAdmitted); n != 1 {
			t.Errorf("%s admitted %v requests after the swapped attempt, want still 1", name, n)
		}
	}
}

// TestChainUsage: list flags take one entry, or one per proxy.
func TestChainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-proxy", "https://127.0.0.1:1,https://127.0.0.1:2", "-ca", "a.pem,b.pem,c.pem", "fetch", "https://example.com/"},
		{"-proxy", "https://127.0.0.1:1,https://127.0.0.1:2,https://127.0.0.1:3", "fetch", "https://example.com/"},
		{"-proxy", "https://127.0.0.1:1,", "fetch", "https://example.com/"},
		{"-proxy", "https://127.0.0.1:1,https://127.0.0.1:2", "-account-key", ",k", "-attester", "https://a/", "fetch", "https://example.com/"},
	} {
		if _, _, err := fetch(t, args...); !isUsage(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
