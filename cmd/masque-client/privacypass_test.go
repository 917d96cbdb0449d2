package main

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass"
	"github.com/masqued/masqued/privacypass/ppserver"
	"github.com/masqued/masqued/tunnel"
)

// TestFetchWithTokens fetches through a proxy that wants Privacy Pass tokens,
// over its HTTP/3 and its TCP front, minting them with an account at the
// proxy's in-process attester.
func TestFetchWithTokens(t *testing.T) {
	pa, err := ppserver.StartProxyAuth(ppserver.ProxyConfig{Listen: "127.0.0.1:0", TLSConfig: testnet.NewCert(t).ServerTLS(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close() })
	proxy := proxytest.Start(t, testnet.IPv4, true, func(c *tunnel.Config) { c.Auth = pa }).URL
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	pp := []string{"-account-key", pa.KeyFile, "-attester", pa.AttesterURL, "-issuer-directory", pa.DirectoryURL}
	for _, args := range [][]string{ // both fronts, both kinds of tunnel
		{"fetch", h3 + "/"},
		{"-via", "tcp,h3", "fetch", https + "/"},
		{"-via", "udp,h2", "fetch", h3 + "/"},
		{"-via", "tcp,h1", "fetch", https + "/"},
	} {
		stdout, stderr, err := fetch(t, append(append([]string{"-proxy", proxy, "-ca", ca}, pp...), args...)...)
		if err != nil || stdout != string(body) {
			t.Fatalf("%v: %v, %d bytes\n%s", args, err, len(stdout), stderr)
		}
	}
	if _, _, err := fetch(t, "-proxy", proxy, "-ca", ca, "fetch", h3+"/"); err == nil || !strings.Contains(err.Error(), "407") {
		t.Fatalf("without an account: %v", err)
	}
	if _, _, err := fetch(t, "-proxy", proxy, "-ca", ca, "-account-key", pa.KeyFile, "fetch", h3+"/"); !isUsage(err) {
		t.Fatalf("-account-key without -attester: %v", err)
	}
}

func isUsage(err error) bool {
	var u *cli.UsageError
	return errors.As(err, &u)
}

// TestServeBinariesWithTokens runs the built masqued -auth privacypass, with
// its in-process issuer and attester, and masque-client serve with the demo
// account, which mints tokens ahead; curl fetches through the entry point.
func TestServeBinariesWithTokens(t *testing.T) {
	dir, origin := buildBinaries(t)
	l, err := net.Listen("tcp", "127.0.0.1:0") // a port for the attester, free a moment ago
	if err != nil {
		t.Fatal(err)
	}
	pp := l.Addr().String()
	l.Close()

	proxy := startBinary(t, filepath.Join(dir, "masqued"), "-listen", "127.0.0.1:0", "-allow-private-targets",
		"-cert-out", filepath.Join(dir, "cert.pem"), "-log-level", "warn",
		"-auth", "privacypass", "-pp-listen", pp, "-pp-state", filepath.Join(dir, "pp"))
	proxyAddr := line(t, proxy, "listening on ")
	cert := line(t, proxy, "certificate ")
	client := startBinary(t, filepath.Join(dir, "masque-client"), "-proxy", "https://"+proxyAddr, "-ca", cert,
		"-account-key", filepath.Join(dir, "pp", "demo.key"), "-attester", "https://"+pp+privacypass.DefaultRequestPath,
		"-issuer-directory", "https://"+pp+privacypass.DirectoryPath,
		"serve", "-socks5", "127.0.0.1:0", "-http", "127.0.0.1:0")
	socks := line(t, client, "socks5 listening on ")
	httpProxy := line(t, client, "http listening on ")
	for i := range 3 {
		for _, args := range [][]string{
			{"--socks5-hostname", socks, origin.URL + "/socks5"},
			{"-x", "http://" + httpProxy, origin.URL + "/http"},
		} {
			want := "through " + args[2][len(origin.URL):]
			if got := testnet.Curl(t, args...); got != want {
				t.Errorf("round %d: curl %q: %q, want %q", i, args, got, want)
			}
		}
	}
}
