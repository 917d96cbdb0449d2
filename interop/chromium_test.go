package interop

import (
	"context"
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
	"github.com/masqued/masqued/interop/runner"
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
	spki, err := runner.SPKIHash(cert.PEM) // the proxy's certificate and the origin's
	if err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct{ url, want, front string }{
		{secure.URL + "/", "served over https", "tcp"},
		{plain.URL + "/", "served over http", "tcp"},
	} {
		t.Run(strings.SplitN(tc.url, ":", 2)[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(runner.ChromiumArgs(proxy.URL, t.TempDir(), spki), "--disable-quic", "--dump-dom", tc.url)
			cmd := exec.CommandContext(ctx, chromium, args...)
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
			// Chromium picks HTTP/2 or HTTP/1.1 to the proxy by ALPN.
			n := proxy.Metric(t, "masqued_tunnels_total", "front", "h2", "kind", tc.front) +
				proxy.Metric(t, "masqued_tunnels_total", "front", "h1", "kind", tc.front)
			if n < float64(i+1) {
				t.Fatalf("masqued_tunnels_total{front=h2 or h1} = %v, want at least %d: the page did not come through the proxy", n, i+1)
			}
		})
	}
}
