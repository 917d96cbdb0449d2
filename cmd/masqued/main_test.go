package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// daemon is masqued running in-process for one test.
type daemon struct {
	addr     string // from "listening on"
	certPath string // from "certificate"
	stop     func() error
	lines    *bufio.Scanner // its further stdout lines
}

// line reads masqued's next stdout line, which must start with prefix, and
// returns the rest.
func (d *daemon) line(t *testing.T, prefix string) string {
	t.Helper()
	if !d.lines.Scan() {
		t.Fatalf("masqued printed no %q line", prefix)
	}
	v, ok := strings.CutPrefix(d.lines.Text(), prefix)
	if !ok {
		t.Fatalf("line %q, want prefix %q", d.lines.Text(), prefix)
	}
	return v
}

// start runs masqued with args and reads its two start-up lines.
func start(t *testing.T, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, args, pw, testWriter{t})
		pw.CloseWithError(runErr)
	}()
	stop := func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(20 * time.Second):
			t.Fatal("masqued did not stop")
			return nil
		}
	}
	t.Cleanup(func() { cancel(); pr.Close(); <-done })

	sc := bufio.NewScanner(pr)
	d := &daemon{stop: stop, lines: sc}
	for _, f := range []struct {
		prefix string
		dst    *string
	}{{"listening on ", &d.addr}, {"certificate ", &d.certPath}} {
		if !sc.Scan() {
			t.Fatalf("masqued stopped before printing %q: %v", f.prefix, stop())
		}
		v, ok := strings.CutPrefix(sc.Text(), f.prefix)
		if !ok {
			t.Fatalf("line %q, want prefix %q", sc.Text(), f.prefix)
		}
		*f.dst = v
	}
	return d
}

// testWriter sends masqued's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// fetch gets a page from an HTTP/3 origin through the proxy at d with
// CONNECT-UDP, trusting the certificate d printed.
func (d *daemon) fetch(t *testing.T, origin *net.UDPAddr) string {
	t.Helper()
	body, _ := proxytest.FetchH3(t, "https://"+d.addr, h3.Config{TLSConfig: trust(t, d.certPath)}, origin, "/hello")
	return string(body)
}

// writeKeyPair writes the test certificate and its key as PEM files.
func writeKeyPair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	cert := testnet.NewCert(t)
	der, err := x509.MarshalPKCS8PrivateKey(cert.TLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, cert.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestServe starts masqued, checks the lines it prints and the certificate
// file, fetches a page from an HTTP/3 origin through it with CONNECT-UDP, and
// stops it as SIGINT would.
func TestServe(t *testing.T) {
	certFile, keyFile := writeKeyPair(t)
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		for _, tc := range []struct {
			name       string
			args       func(dir string) []string
			wantCert   func(dir string) string
			selfSigned bool // masqued wrote wantCert
		}{
			{
				name:       "default cert path", // $XDG_STATE_HOME is dir
				args:       func(string) []string { return nil },
				wantCert:   func(dir string) string { return filepath.Join(dir, "masqued", "cert.pem") },
				selfSigned: true,
			},
			{
				name:       "cert-out",
				args:       func(dir string) []string { return []string{"-cert-out", filepath.Join(dir, "out", "cert.pem")} },
				wantCert:   func(dir string) string { return filepath.Join(dir, "out", "cert.pem") },
				selfSigned: true,
			},
			{
				name:     "tls-cert",
				args:     func(string) []string { return []string{"-tls-cert", certFile, "-tls-key", keyFile} },
				wantCert: func(string) string { return certFile },
			},
		} {
			t.Run(host+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				t.Setenv("XDG_STATE_HOME", dir)
				origin := testnet.H3Origin(t, host, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "hello from "+r.URL.Path)
				}))
				args := append([]string{"-listen", net.JoinHostPort(host, "0"), "-allow-private-targets"}, tc.args(dir)...)
				d := start(t, args...)
				if ap, err := net.ResolveUDPAddr("udp", d.addr); err != nil || ap.Port == 0 || !ap.IP.Equal(net.ParseIP(host)) {
					t.Fatalf("listening on %q: want %s and a real port", d.addr, host)
				}
				want := tc.wantCert(dir)
				if d.certPath != want {
					t.Fatalf("certificate %q, want %q", d.certPath, want)
				}
				if tc.selfSigned {
					checkMode(t, filepath.Dir(want), 0o700|fs.ModeDir)
					checkMode(t, want, 0o644)
				}
				if got := d.fetch(t, origin); got != "hello from /hello" {
					t.Fatalf("body %q", got)
				}
				if err := d.stop(); err != nil {
					t.Fatalf("run after stop: %v", err)
				}
			})
		}
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

// TestBadConfig checks that a wrong command line fails at once with an error
// that names what is wrong, and the exit code cli.Main would give it: 2 for
// usage and configuration mistakes, 1 for failures of the machine.
func TestBadConfig(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	certFile, keyFile := writeKeyPair(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
		code int
	}{
		{"bad template", []string{"-udp-template", "https://{proxy}/masque/{target_host}/"}, "-udp-template", 2},
		{"not a template", []string{"-udp-template", "no braces here"}, "-udp-template", 2},
		{"cert without key", []string{"-tls-cert", certFile}, "-tls-key", 2},
		{"key without cert", []string{"-tls-key", keyFile}, "-tls-cert", 2},
		{"cert-out with cert", []string{"-tls-cert", certFile, "-tls-key", keyFile, "-cert-out", "x.pem"}, "-cert-out", 2},
		{"unreadable key", []string{"-tls-cert", certFile, "-tls-key", certFile}, "-tls-cert: loading the certificate and key", 2},
		{"log level", []string{"-log-level", "loud"}, "-log-level", 2},
		{"log format", []string{"-log-format", "xml"}, "-log-format", 2},
		{"access log", []string{"-access-log", "both"}, "-access-log", 2},
		{"unknown flag", []string{"-no-such-flag"}, "no-such-flag", 2},
		{"argument", []string{"serve"}, "serve", 2},
		{"negative limit", []string{"-max-tunnels", "-1"}, "negative", 2},
		{"listen", []string{"-listen", "127.0.0.1:99999"}, "99999", 1},
		{"geoip without pools", []string{"-geoip-db", "x.mmdb"}, "-egress-pools", 2},
		{"missing pools", []string{"-egress-pools", "no-such-file.csv"}, "egress pools", 2},
		{"resolver", []string{"-resolver", "ftp://1.1.1.1"}, "-resolver", 2},
		{"precision", []string{"-egress-pools", "../../geoegress/testdata/pools.csv", "-geohash-precision", "13"}, "precision", 2},
		{"auth", []string{"-auth", "bearer,magic"}, "-auth", 2},
		{"auth none in a list", []string{"-auth", "none,basic"}, "-auth", 2},
		{"auth without credentials", []string{"-auth", "bearer"}, "-auth-credentials", 2},
		{"credentials missing", []string{"-auth", "basic", "-auth-credentials", "no-such-file"}, "-auth-credentials", 2},
		{"missing config", []string{"-config", "no-such.yaml"}, "config file", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			args := append([]string{"-listen", "127.0.0.1:0"}, tc.args...)
			err := run(t.Context(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d", got, tc.code)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			if stdout.Len() > 0 {
				t.Errorf("printed %q to stdout", stdout.String())
			}
		})
	}
}

// exitCode is the code cli.Main exits with for err.
func exitCode(err error) int {
	var usage *cli.UsageError
	var config *cli.ConfigError
	if errors.As(err, &usage) || errors.As(err, &config) {
		return 2
	}
	return 1
}

// TestEgressFlags: with -egress-pools, tunnels leave from a pool address.
func TestEgressFlags(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	pools := filepath.Join(t.TempDir(), "pools.csv")
	if err := os.WriteFile(pools, []byte("127.0.0.8,,,,,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := start(t, "-listen", "127.0.0.1:0", "-allow-private-targets", "-egress-pools", pools, "-resolver", "udp://127.0.0.1:53")
	origin := testnet.WhoAmI(t, testnet.IPv4)
	ctx := testnet.Context(t, 20*time.Second)
	c, err := h3.Dial(ctx, "https://"+d.addr, h3.Config{TLSConfig: trust(t, d.certPath)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := c.DialTCP(ctx, origin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if seen := testnet.ReadWhoAmI(t, conn); seen.Addr().String() != "127.0.0.8" {
		t.Errorf("origin saw %s, want the pool's 127.0.0.8", seen)
	}

	// The TCP front publishes the pools (RFC 8805).
	tr := &http.Transport{TLSClientConfig: trust(t, d.certPath)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + d.addr + "/.well-known/geofeed.csv")
	if err != nil {
		t.Fatal(err)
	}
	feed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(feed), "127.0.0.8/32") {
		t.Errorf("geofeed: %s\n%s", resp.Status, feed)
	}
}
