package ppserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/masqued/masqued/privacypass"
	"golang.org/x/time/rate"
)

// TestProxyAuthWithIssuerElsewhere sets a proxy up as masqued -auth
// privacypass -pp-issuer URL -pp-redis HOST:PORT does: it accepts the
// directory's type-2 keys only, and spends tokens in Redis.
func TestProxyAuthWithIssuerElsewhere(t *testing.T) {
	ta := newTestAuthority(t, rate.Inf, 0)
	r := startRedis(t)
	pa, err := StartProxyAuth(ProxyConfig{IssuerDirectory: ta.directory, Redis: r.addr, ProxyName: "0.0.0.0:443"})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	if pa.AttesterURL != "" {
		t.Errorf("an attester URL %q without an embedded attester", pa.AttesterURL)
	}
	cs := privacypass.ParseChallenges(refusal(t, pa.Authenticate(tunnelRequest()), http.StatusProxyAuthRequired).Header().Values("Proxy-Authenticate"))
	u, _ := url.Parse(ta.directory)
	if len(cs) != 1 || cs[0].TokenChallenge.Type != privacypass.TypePublic || cs[0].TokenChallenge.OriginInfo != "" ||
		cs[0].TokenChallenge.IssuerName != u.Host {
		t.Fatalf("challenges %+v", cs)
	}
	cl := newTestClient(t, ta, privacypass.ClientConfig{DirectoryURL: ta.directory})
	cred, err := cl.Authorize(t.Context(), []string{cs[0].String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Authenticate(tunnelRequest(cred)); err != nil {
		t.Fatal(err)
	}
	refusal(t, pa.Authenticate(tunnelRequest(cred)), http.StatusProxyAuthRequired)
}

func TestStartProxyAuthFails(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	for name, c := range map[string]ProxyConfig{
		"relative directory":    {IssuerDirectory: "/.well-known/private-token-issuer-directory"},
		"unreachable directory": {IssuerDirectory: dead.URL + privacypass.DirectoryPath},
		"unreachable redis":     {IssuerDirectory: dead.URL + privacypass.DirectoryPath, Redis: t.TempDir() + "/none.sock"},
		"listen":                {Listen: "127.0.0.1:99999", StateDir: t.TempDir()},
	} {
		if pa, err := StartProxyAuth(c); err == nil {
			pa.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOriginInfo(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4433":  "127.0.0.1:4433",
		"proxy.example":   "proxy.example",
		"0.0.0.0:4433":    "",
		"[::]:4433":       "",
		"":                "",
		"[2001:db8::1]:1": "[2001:db8::1]:1",
	} {
		if got := originInfo(in); got != want {
			t.Errorf("originInfo(%q) = %q, want %q", in, got, want)
		}
	}
}
