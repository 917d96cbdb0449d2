package interop

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// chromiumPath finds Debian's chromium. Without it the test is skipped, or
// failed where CI=true (make test installs it there).
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing; make test installs it")
		}
		t.Skip("chromium is missing (apt-get install chromium)")
	}
	return path
}

// spkiHash is the base64 SHA-256 of a certificate's public key, the form
// --ignore-certificate-errors-spki-list takes.
func spkiHash(t *testing.T, cert testnet.Cert) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestChromiumThroughHTTPSProxy loads an https and an http page from local
// origins in headless Chromium configured with masqued as its HTTPS proxy:
// Chromium sends CONNECT for the https page and a forwarded GET for the
// http one. Each origin counts what it served, and the proxy's metrics show
// the tunnels: the pages came through the proxy, not around it.
func TestChromiumThroughHTTPSProxy(t *testing.T) {
	chromium := chromiumPath(t)
	proxy := proxytest.Start(t, testnet.IPv4, true)
	cert := testnet.NewCert(t)
	var served atomic.Int64
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body><p id=m>served over "+map[bool]string{true: "https", false: "http"}[r.TLS != nil]+" to "+r.Host+"</p></body></html>")
	})
	secure := httptest.NewUnstartedServer(page)
	secure.TLS = cert.ServerTLS()
	secure.StartTLS()
	defer secure.Close()
	plain := httptest.NewServer(page)
	defer plain.Close()

	for i, tc := range []struct{ url, want, front string }{
		{secure.URL + "/", "served over https", "tcp"},
		{plain.URL + "/", "served over http", "tcp"},
	} {
		t.Run(strings.SplitN(tc.url, ":", 2)[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, chromium,
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir="+t.TempDir(),
				"--proxy-server="+proxy.URL,
				"--proxy-bypass-list=<-loopback>", // proxy loopback too: the origins are local
				"--ignore-certificate-errors-spki-list="+spkiHash(t, cert),
				"--dump-dom", tc.url)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) || ctx.Err() != nil {
					t.Fatalf("chromium: %v\n%s", err, stderr.String())
				}
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("page lacks %q:\n%s\nchromium's log:\n%s", tc.want, out, stderr.String())
			}
			if n := served.Load(); n < int64(i+1) {
				t.Fatalf("origins served %d pages, want at least %d", n, i+1)
			}
			if n := proxy.Metric(t, "masqued_tunnels_total", "front", "h2", "kind", tc.front); n < float64(i+1) {
				t.Fatalf("masqued_tunnels_total{front=h2} = %v, want at least %d: the page did not come through the proxy", n, i+1)
			}
		})
	}
}
