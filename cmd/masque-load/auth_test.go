package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/masqued/masqued/cmd/masque-load/internal/load"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass/ppserver"
	"github.com/masqued/masqued/tunnel"
)

// challenge is the refusal of a request without the right credentials.
type challenge struct{}

func (challenge) Error() string   { return "proxy authorization required" }
func (challenge) HTTPStatus() int { return http.StatusProxyAuthRequired }
func (challenge) Header() http.Header {
	return http.Header{"Proxy-Authenticate": {`Bearer realm="load"`}}
}

// Authenticated load: the Authorizer on the dialer answers the proxy's 407s
// (-proxy-authorization here, a Privacy Pass token pool later); without it
// every tunnel is refused, and the breakdown says so.
func TestProxyAuthorization(t *testing.T) {
	p := proxytest.StartH3(t, testnet.IPv4, true, func(c *tunnel.Config) {
		c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
			if r.Header.Get("Proxy-Authorization") != "Bearer load-test" {
				return challenge{}
			}
			return nil
		})
	})
	args := []string{"-proxy", p.URL, "-ca", p.CertFile, "-mode", "setup", "-c", "1", "-t", "2", "-d", "300ms", "-warmup", "0s", "-json"}

	stdout, stderr, err := runLoad(t, append(args, "-proxy-authorization", "Bearer load-test")...)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Ops == 0 || rep.Errors != 0 {
		t.Fatalf("with credentials: %v, %d ops, errors %v", err, rep.Ops, rep.ErrorsByClass)
	}

	for _, authz := range []string{"", "Bearer wrong"} {
		stdout, _, err = runLoad(t, append(args, "-proxy-authorization", authz)...)
		if err == nil || !strings.Contains(err.Error(), "no operation succeeded") {
			t.Errorf("with %q: error %v", authz, err)
		}
		rep = load.Report{}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Errors == 0 || rep.ErrorsByClass["407 http_request_denied"] != rep.Errors {
			t.Errorf("with %q: %v, errors %v", authz, err, rep.ErrorsByClass)
		}
	}
}

// Privacy Pass: tokens minted before the run through the proxy's attester,
// one presented per tunnel; when they run out, the breakdown says so.
func TestPrivacyPassTokens(t *testing.T) {
	pa, err := ppserver.StartProxyAuth(ppserver.ProxyConfig{Listen: "127.0.0.1:0", TLSConfig: testnet.NewCert(t).ServerTLS(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close() })
	p := proxytest.Start(t, testnet.IPv4, true, func(c *tunnel.Config) { c.Auth = pa })
	args := []string{"-proxy", p.URL, "-ca", p.CertFile, "-mode", "setup", "-c", "1", "-t", "2", "-n", "20", "-warmup", "0s", "-json",
		"-account-key", pa.KeyFile, "-attester", pa.AttesterURL, "-issuer-directory", pa.DirectoryURL}
	for _, tc := range []struct {
		via         string
		tokens      string
		ops, errors int64
	}{
		// 45 tokens in all: the demo account may mint 50 at once.
		{"h3", "20", 20, 0},
		{"h2", "20", 20, 0},
		{"h3", "5", 5, 15}, // used up
	} {
		stdout, stderr, err := runLoad(t, append(args, "-via", tc.via, "-tokens", tc.tokens)...)
		if err != nil {
			t.Fatalf("%s, %s tokens: %v\n%s%s", tc.via, tc.tokens, err, stdout, stderr)
		}
		var rep load.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Ops != tc.ops || rep.Errors != tc.errors || rep.ErrorsByClass["auth"] != tc.errors {
			t.Errorf("%s, %s tokens: %d ops, errors %v; want %d and %d auth", tc.via, tc.tokens, rep.Ops, rep.ErrorsByClass, tc.ops, tc.errors)
		}
		if !strings.Contains(stderr, "minted "+tc.tokens+" tokens") {
			t.Errorf("stderr %q", stderr)
		}
	}
	// The demo account has used up its burst of 50.
	_, _, err = runLoad(t, append(args, "-tokens", "50")...)
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "lower -tokens") {
		t.Errorf("minting past the attester's limit: %v", err)
	}
	// A proxy that wants no credentials gets no tokens.
	open := proxytest.StartH3(t, testnet.IPv4, true)
	_, _, err = runLoad(t, "-proxy", open.URL, "-ca", open.CertFile, "-account-key", pa.KeyFile, "-attester", pa.AttesterURL, "-d", "1s")
	if err == nil || !strings.Contains(err.Error(), "admits tunnels without credentials") {
		t.Errorf("error %v", err)
	}
}
