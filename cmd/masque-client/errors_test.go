package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// TestErrorsSayWhy runs masque-client against real proxies and origins on
// loopback, each failing in one way, and checks that the message names the
// cause and the fix. None of the checks is about time: the proxy-down case
// is bounded only by -timeout, 20 times the second it should take.
func TestErrorsSayWhy(t *testing.T) {
	proxy := proxytest.Start(t, testnet.IPv4, true)
	ca := proxy.CertFile
	elsewhere := proxytest.StartH3(t, "127.0.0.2", true) // an address the test certificate does not cover
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	other := otherCert(t)
	down := closedPort(t) // no TCP, no UDP
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing -ca", []string{"-proxy", proxy.URL, "fetch", h3 + "/"},
			[]string{"the proxy's certificate at " + proxy.URL + " is not trusted", "x509: certificate signed by unknown authority", "pass -ca FILE", `("certificate `}},
		{"wrong -ca", []string{"-proxy", proxy.URL, "-ca", other, "-via", "tcp", "fetch", https + "/"},
			[]string{"the proxy's certificate at " + proxy.URL + " is not trusted", "-ca " + other + " holds another certificate"}},
		{"proxy name", []string{"-proxy", elsewhere.URL, "-ca", ca, "fetch", h3 + "/"},
			[]string{"the proxy's certificate at " + elsewhere.URL + " does not cover that name", "name the proxy in -proxy by one of localhost"}},
		{"wrong -origin-ca udp", []string{"-proxy", proxy.URL, "-ca", ca, "-origin-ca", other, "fetch", h3 + "/"},
			[]string{"the origin's certificate for " + strings.TrimPrefix(h3, "https://") + " is not trusted", "-origin-ca " + other + " holds neither"}},
		{"wrong -origin-ca tcp", []string{"-proxy", proxy.URL, "-ca", ca, "-origin-ca", other, "-via", "tcp", "fetch", https + "/"},
			[]string{"the origin's certificate for " + strings.TrimPrefix(https, "https://") + " is not trusted", "-origin-ca " + other + " holds neither"}},
		{"origin name", []string{"-proxy", proxy.URL, "-ca", ca, "-via", "tcp", "fetch", httpsOriginOn(t, "127.0.0.2") + "/"},
			[]string{"the origin's certificate for 127.0.0.2:", "does not cover that name", "fetch a URL whose host is one of localhost"}},
		{"proxy down", []string{"-proxy", "https://" + down, "-ca", ca, "-timeout", "20s", "fetch", h3 + "/"},
			[]string{"nothing listening at " + down + " (TCP refused, no QUIC answer within 1s)", "start masqued"}},
		{"tcp target refused", []string{"-proxy", proxy.URL, "-ca", ca, "-via", "tcp", "fetch", "http://" + down + "/"},
			[]string{"502 Bad Gateway", "error=connection_refused", "is anything listening on the target's port?"}},
	} {
		t.Run(tc.name, func(t *testing.T) { fetchFails(t, tc.args, tc.want) })
	}
}

// TestUDPTargetErrors: a fetch over a CONNECT-UDP tunnel to a closed UDP
// port says that the target refused the packets, as the proxy reports it
// (skipped where this host sends no ICMP port unreachable on loopback), and
// one to a UDP socket that never answers says that nothing came back.
func TestUDPTargetErrors(t *testing.T) {
	proxy := proxytest.Start(t, testnet.IPv4, true)
	down := closedPort(t)
	silent := testnet.UDP(t, testnet.IPv4).LocalAddr().String() // bound, never read: no ICMP, no answer
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		refused bool // needs ICMP port unreachable from down
	}{
		{name: "refused", refused: true, args: []string{"-proxy", proxy.URL, "-ca", proxy.CertFile, "fetch", "https://" + down + "/"},
			want: []string{"the target " + down + " refused the UDP tunnel's packets (ICMP port unreachable, reported by the proxy): is anything listening on that UDP port?"}},
		{name: "refused over h2", refused: true, args: []string{"-proxy", proxy.URL, "-ca", proxy.CertFile, "-via", "udp,h2", "fetch", "https://" + down + "/"},
			want: []string{"the target " + down + " refused the UDP tunnel's packets"}},
		{name: "refused over h1", refused: true, args: []string{"-proxy", proxy.URL, "-ca", proxy.CertFile, "-via", "udp,h1", "fetch", "https://" + down + "/"},
			want: []string{"the target " + down + " refused the UDP tunnel's packets"}},
		{name: "silent", args: []string{"-proxy", proxy.URL, "-ca", proxy.CertFile, "fetch", "https://" + silent + "/"},
			want: []string{"no answer from the target " + silent + " over UDP", "is anything listening on that UDP port, and does it speak HTTP/3?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.refused {
				testnet.SkipWithoutICMP(t, down)
			}
			fetchFails(t, tc.args, tc.want)
		})
	}
}

// TestProhibitedTargetHint: a private target refused by the proxy's policy
// points at -allow-private-targets; a tunnel back into the proxy, which no
// flag allows, does not.
func TestProhibitedTargetHint(t *testing.T) {
	strict := proxytest.Start(t, testnet.IPv4, false)
	origin := httpOrigin(t)
	fetchFails(t, []string{"-proxy", strict.URL, "-ca", strict.CertFile, "-via", "tcp", "fetch", origin + "/"},
		[]string{"403 Forbidden", "error=destination_ip_prohibited", "masqued -allow-private-targets allows them"})

	open := proxytest.Start(t, testnet.IPv4, true)
	self := "http://" + strings.TrimPrefix(open.URL, "https://") + "/"
	_, _, err := fetch(t, "-proxy", open.URL, "-ca", open.CertFile, "-via", "tcp", "fetch", self)
	if err == nil || !strings.Contains(err.Error(), "target is the proxy itself") || strings.Contains(err.Error(), "-allow-private-targets") {
		t.Fatalf("a tunnel into the proxy itself: %v; want the refusal without the -allow-private-targets hint", err)
	}
}

// fetchFails runs masque-client with args and checks that it fails with an
// error that holds each of want.
func fetchFails(t *testing.T, args, want []string) {
	t.Helper()
	_, _, err := fetch(t, args...)
	if err == nil {
		t.Fatal("fetch succeeded")
	}
	t.Log(err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// TestUsageProxyURL: a -proxy without a scheme is a usage mistake (exit 2)
// whose line shows the form wanted.
func TestUsageProxyURL(t *testing.T) {
	for _, proxy := range []string{"127.0.0.1:4433", "http://127.0.0.1:4433", "https://"} {
		_, stderr, err := fetch(t, "-proxy", proxy, "fetch", "https://x/")
		var usage *cli.UsageError
		if !errors.As(err, &usage) || !strings.Contains(stderr, "-proxy wants a URL such as https://127.0.0.1:4433") {
			t.Errorf("-proxy %s: %v, stderr:\n%s", proxy, err, stderr)
		}
	}
}

// otherCert writes a certificate that signs neither proxy nor origins.
func otherCert(t *testing.T) string {
	t.Helper()
	_, pem, err := certs.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(f, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// closedPort returns a 127.0.0.1 address where neither TCP nor UDP listens.
func closedPort(t *testing.T) string {
	t.Helper()
	u := testnet.UDP(t, testnet.IPv4) // its port is free for TCP too
	addr := u.LocalAddr().String()
	u.Close()
	return addr
}

// httpsOriginOn serves HTTPS with the test certificate on host, an address
// the certificate does not cover.
func httpsOriginOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no %s on this host: %v", host, err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(serveBody))
	s.Listener.Close()
	s.Listener = l
	s.TLS = testnet.NewCert(t).ServerTLS()
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.URL
}
