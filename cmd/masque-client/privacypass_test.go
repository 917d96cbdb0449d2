package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/internal/tunnel"
	"github.com/masqued/masqued/privacypass"
)

// TestFetchWithTokens fetches through a proxy that wants Privacy Pass tokens,
// over its HTTP/3 and its TCP front, minting them with an account at the
// proxy's in-process attester.
func TestFetchWithTokens(t *testing.T) {
	pa, err := privacypass.StartProxyAuth(privacypass.ProxyConfig{Listen: "127.0.0.1:0", TLSConfig: testnet.NewCert(t).ServerTLS(), StateDir: t.TempDir()})
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
