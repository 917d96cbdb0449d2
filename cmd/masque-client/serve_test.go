package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/testnet"
)

// startBinary starts path with args until the test ends; the cleanup
// fails the test unless it exits 0 on SIGTERM.
func startBinary(t *testing.T, path string, args ...string) *proc.Process {
	t.Helper()
	p, err := proc.Start(context.Background(), path, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// line returns the rest of p's next stdout line after prefix.
func line(t *testing.T, p *proc.Process, prefix string) string {
	t.Helper()
	l, err := p.Line(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// buildBinaries builds masqued and masque-client into a temporary directory
// and starts a plain-HTTP origin that answers "through PATH", both for the
// test's lifetime.
func buildBinaries(t *testing.T) (dir string, origin *httptest.Server) {
	t.Helper()
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, cmd := range []string{"masqued", "masque-client"} {
		if err := proc.GoBuild(ctx, filepath.Join("cmd", cmd), filepath.Join(dir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("through " + r.URL.Path))
	}))
	t.Cleanup(origin.Close)
	return dir, origin
}

// TestServeBinaries runs the built masqued and masque-client serve as
// processes and fetches through the entry point with curl, as a user would.
func TestServeBinaries(t *testing.T) {
	dir, origin := buildBinaries(t)

	proxy := startBinary(t, filepath.Join(dir, "masqued"), "-listen", "127.0.0.1:0", "-allow-private-targets",
		"-cert-out", filepath.Join(dir, "cert.pem"), "-log-level", "warn")
	proxyAddr := line(t, proxy, "listening on ")
	cert := line(t, proxy, "certificate ")
	client := startBinary(t, filepath.Join(dir, "masque-client"), "-proxy", "https://"+proxyAddr, "-ca", cert,
		"serve", "-socks5", "127.0.0.1:0", "-http", "127.0.0.1:0")
	socks := line(t, client, "socks5 listening on ")
	httpProxy := line(t, client, "http listening on ")

	for _, args := range [][]string{
		{"--socks5-hostname", socks, origin.URL + "/socks5"},
		{"-x", "http://" + httpProxy, origin.URL + "/http"},
	} {
		want := "through " + args[2][len(origin.URL):]
		if got := testnet.Curl(t, args...); got != want {
			t.Errorf("curl %q: %q, want %q", args, got, want)
		}
	}
}
