package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/privacypass"
)

// freeTCPAddr returns a loopback address with a port that was free a moment ago.
func freeTCPAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestPrivacyPassEmbedded runs masqued -auth privacypass with its
// in-process issuer and attester, as the quick start does: a tunnel without
// a token gets 407, and one with a token minted with the demo account's key
// fetches a page.
func TestPrivacyPassEmbedded(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_STATE_HOME", dir)
	pp := freeTCPAddr(t)
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.URL.Path)
	}))
	d := start(t, "-listen", "127.0.0.1:0", "-allow-private-targets", "-auth", "privacypass", "-pp-listen", pp)
	keyFile := filepath.Join(dir, "masqued", "privacypass", "demo.key")
	checkMode(t, keyFile, 0o600)
	key, err := privacypass.ReadAPIKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(d.certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{RootCAs: pool}

	c, err := h3.Dial(testnet.Context(t, time.Minute), "https://"+d.addr, h3.Config{TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListenUDP(testnet.Context(t, time.Minute), origin.String())
	var pe *h3.ProxyError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired || len(privacypass.ParseChallenges(pe.Challenges)) == 0 {
		t.Fatalf("without a token: %v", err)
	}
	c.Close()

	tr := &http.Transport{TLSClientConfig: tlsConf}
	defer tr.CloseIdleConnections()
	tokens, err := privacypass.NewClient(privacypass.ClientConfig{
		AttesterURL:  "https://" + pp + privacypass.DefaultRequestPath,
		DirectoryURL: "https://" + pp + privacypass.DirectoryPath,
		APIKey:       key,
		HTTPClient:   &http.Client{Transport: tr, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tokens.Close()
	body, _ := proxytest.FetchH3(t, "https://"+d.addr, h3.Config{TLSConfig: tlsConf, Authorizer: tokens}, origin, "/hello")
	if string(body) != "hello from /hello" {
		t.Fatalf("body %q", body)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("run after stop: %v", err)
	}
}

func TestPrivacyPassBadConfig(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	for _, args := range [][]string{
		{"-auth", "basic"},
		{"-auth", "privacypass", "-pp-issuer", "not a url"},
		{"-auth", "privacypass", "-pp-listen", "127.0.0.1:99999"},
	} {
		var stdout, stderr strings.Builder
		err := run(t.Context(), append([]string{"-listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), args[len(args)-1]) && !strings.Contains(err.Error(), "-auth") {
			t.Errorf("%q: %v", args, err)
		}
	}
}
