package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// body is what the origins serve: large enough to span many packets.
var body = bytes.Repeat([]byte("masque-client "), 100_000)

func serveBody(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/missing" {
		http.NotFound(w, r)
		return
	}
	w.Write(body)
}

// startProxy runs an HTTP/3 proxy on 127.0.0.1 and returns its URL. With
// allowPrivate false it keeps the production SSRF policy, which refuses
// loopback targets.
func startProxy(t *testing.T, allowPrivate bool) string {
	return proxytest.StartH3(t, testnet.IPv4, allowPrivate).URL
}

// httpsOrigin serves HTTP/2 and HTTP/1.1 over TLS on 127.0.0.1.
func httpsOrigin(t *testing.T) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(serveBody))
	s.EnableHTTP2 = true
	s.TLS = testnet.NewCert(t).ServerTLS()
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.URL
}

// httpOrigin serves plain HTTP/1.1 on 127.0.0.1.
func httpOrigin(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(serveBody))
	t.Cleanup(s.Close)
	return s.URL
}

// caFile writes the test certificate, which proxy and origins share.
func caFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, testnet.NewCert(t).PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// fetch runs masque-client with args and returns stdout and stderr.
func fetch(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestFetchTransports fetches over each transport to the proxy that -via
// names, with each kind of tunnel.
func TestFetchTransports(t *testing.T) {
	proxy := proxytest.Start(t, testnet.IPv4, true).URL
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	for _, tc := range []struct{ via, url, want string }{
		{"h3", h3, "over h3"},
		{"auto", h3, "over h3"},
		{"udp,h2", h3, "over h2"},
		{"h1", h3, "over http/1.1"},
		{"tcp,h2", https, "over h2"},
		{"h1,tcp", https, "over http/1.1"},
	} {
		t.Run(tc.via, func(t *testing.T) {
			stdout, stderr, err := fetch(t, "-proxy", proxy, "-ca", ca, "-v", "-via", tc.via, "fetch", tc.url+"/")
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if stdout != string(body) || !strings.Contains(stderr, tc.want) {
				t.Fatalf("body %d bytes, want %d; -v report lacks %q:\n%s", len(stdout), len(body), tc.want, stderr)
			}
		})
	}
}

func TestFetch(t *testing.T) {
	proxy := startProxy(t, true)
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https, plain := httpsOrigin(t), httpOrigin(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string // in the -v report
	}{
		{"udp", []string{"-via", "udp", "fetch", h3 + "/"}, []string{"connect-udp over QUIC datagrams", "HTTP/3.0 200 OK"}},
		{"udp default", []string{"fetch", h3 + "/"}, []string{"connect-udp over QUIC datagrams"}},
		{"udp capsules", []string{"-disable-datagrams", "fetch", h3 + "/"}, []string{"connect-udp over capsules", "HTTP/3.0 200 OK"}},
		// A proxy that does not forward: the plain tunnel, over the
		// client's own socket.
		{"udp forward refused", []string{"-forward", "fetch", h3 + "/"}, []string{"connect-udp over QUIC datagrams, set up", "forwarded mode: not accepted"}},
		{"udp origin-ca", []string{"-origin-ca", ca, "fetch", h3 + "/"}, []string{"HTTP/3.0 200 OK"}},
		{"udp template", []string{"-udp-template", masque.DefaultUDPTemplate, "fetch", h3}, []string{"HTTP/3.0 200 OK"}},
		{"tcp https", []string{"-via", "tcp", "fetch", https + "/"}, []string{"tunnel to 127.0.0.1:", ": connect,", "HTTP/2.0 200 OK"}},
		{"tcp http", []string{"-via", "tcp", "fetch", plain + "/"}, []string{": connect,", "HTTP/1.1 200 OK"}},
		{"flags after command", []string{"fetch", "-via", "tcp", https + "/"}, []string{"HTTP/2.0 200 OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-proxy", proxy, "-ca", ca, "-v"}, tc.args...)
			stdout, stderr, err := fetch(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			t.Log(stderr)
			if stdout != string(body) {
				t.Fatalf("body: %d bytes, want %d", len(stdout), len(body))
			}
			for _, w := range append(tc.want, "connected to proxy", "first byte after", "1400000 bytes in", "Mbit/s") {
				if !strings.Contains(stderr, w) {
					t.Errorf("-v report lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// -geohash sends its hint with the tunnel request, over HTTP/3 and HTTP/2.
func TestGeohashHint(t *testing.T) {
	hints := make(chan string, 4)
	proxy := proxytest.Start(t, testnet.IPv4, true, func(c *tunnel.Config) {
		c.Auth = tunnel.AuthenticatorFunc(func(r *http.Request) error {
			hints <- r.Header.Get("Sec-CH-Geohash")
			return nil
		})
	}).URL
	for _, via := range []string{"tcp,h3", "tcp,h2"} {
		if _, stderr, err := fetch(t, "-proxy", proxy, "-ca", caFile(t), "-via", via, "-geohash", "u4pruy-DK", "fetch", httpsOrigin(t)+"/"); err != nil {
			t.Fatalf("-via %s: %v\n%s", via, err, stderr)
		}
		if got := <-hints; got != "u4pruy-DK" {
			t.Errorf("-via %s: the proxy saw Sec-CH-Geohash %q, want u4pruy-DK", via, got)
		}
	}
}

func TestOutputFile(t *testing.T) {
	proxy := startProxy(t, true)
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	for _, via := range []string{"udp", "tcp"} {
		t.Run(via, func(t *testing.T) {
			origin := map[string]string{"udp": h3, "tcp": https}[via]
			out := filepath.Join(t.TempDir(), "body")
			stdout, stderr, err := fetch(t, "-proxy", proxy, "-ca", ca, "-via", via, "-o", out, "fetch", origin+"/")
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if stdout != "" || stderr != "" {
				t.Errorf("stdout %d bytes, stderr %q: want both empty", len(stdout), stderr)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("file: %d bytes, want %d", len(got), len(body))
			}
		})
	}
}

// TestFetchFails checks that each failure ends in an error that says why,
// with nothing on stdout and no output file.
func TestFetchFails(t *testing.T) {
	proxy, safeProxy := startProxy(t, true), startProxy(t, false)
	ca := caFile(t)
	h3 := "https://" + testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody)).String()
	https := httpsOrigin(t)
	closed := testnet.UDP(t, testnet.IPv4).LocalAddr().String() // nothing answers QUIC here
	other := otherCert(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"refused udp", []string{"-proxy", safeProxy, "fetch", h3 + "/"}, "destination_ip_prohibited"},
		{"refused tcp", []string{"-proxy", safeProxy, "-via", "tcp", "fetch", https + "/"}, "destination_ip_prohibited"},
		{"not found udp", []string{"-proxy", proxy, "fetch", h3 + "/missing"}, "404 Not Found"},
		{"not found tcp", []string{"-proxy", proxy, "-via", "tcp", "fetch", https + "/missing"}, "404 Not Found"},
		{"untrusted origin udp", []string{"-proxy", proxy, "-origin-ca", other, "fetch", h3 + "/"}, "certificate"},
		{"untrusted origin tcp", []string{"-proxy", proxy, "-origin-ca", other, "-via", "tcp", "fetch", https + "/"}, "certificate"},
		{"empty origin-ca", []string{"-proxy", proxy, "-origin-ca", os.DevNull, "fetch", h3 + "/"}, "-origin-ca"},
		{"untrusted proxy", []string{"-proxy", proxy, "-ca", "", "fetch", h3 + "/"}, "the proxy's certificate"},
		{"bad template", []string{"-proxy", proxy, "-udp-template", "https://{proxy}/udp/", "fetch", h3 + "/"}, "template"},
		{"proxy scheme", []string{"-proxy", "http://" + closed, "fetch", h3 + "/"}, "https://"},
		{"timeout", []string{"-proxy", "https://" + closed, "-timeout", "300ms", "fetch", h3 + "/"}, "deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "body")
			args := append([]string{"-ca", ca, "-o", out}, tc.args...)
			stdout, _, err := fetch(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if stdout != "" {
				t.Errorf("stdout: %d bytes", len(stdout))
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output file: %v, want none", err)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"-proxy", "https://127.0.0.1:1"}, "missing command"},
		{"unknown command", []string{"-proxy", "https://127.0.0.1:1", "get", "https://x/"}, `unknown command "get"`},
		{"no URL", []string{"-proxy", "https://127.0.0.1:1", "fetch"}, "one URL"},
		{"two URLs", []string{"-proxy", "https://127.0.0.1:1", "fetch", "https://a/", "https://b/"}, "one URL"},
		{"no proxy", []string{"fetch", "https://x/"}, "-proxy is required"},
		{"bad via", []string{"-proxy", "https://127.0.0.1:1", "-via", "sctp", "fetch", "https://x/"}, "-via"},
		{"two tunnels", []string{"-proxy", "https://127.0.0.1:1", "-via", "udp,tcp", "fetch", "https://x/"}, "two tunnels"},
		{"two transports", []string{"-proxy", "https://127.0.0.1:1", "-via", "h2,h3", "fetch", "https://x/"}, "two transports"},
		{"empty via", []string{"-proxy", "https://127.0.0.1:1", "-via", "udp,", "fetch", "https://x/"}, "-via"},
		{"relative URL", []string{"-proxy", "https://127.0.0.1:1", "fetch", "/index.html"}, "absolute URL"},
		{"http over udp", []string{"-proxy", "https://127.0.0.1:1", "fetch", "http://x/"}, "-via tcp"},
		{"unknown flag", []string{"-insecure", "fetch", "https://x/"}, "insecure"},
		{"serve without addresses", []string{"-proxy", "https://127.0.0.1:1", "serve"}, "serve needs -socks5"},
		{"serve with an argument", []string{"-proxy", "https://127.0.0.1:1", "serve", "-socks5", "127.0.0.1:0", "x"}, "serve takes no arguments"},
		{"serve without proxy", []string{"serve", "-http", "127.0.0.1:0"}, "-proxy is required"},
		{"bad geohash", []string{"-proxy", "https://127.0.0.1:1", "-geohash", "u4pr!", "fetch", "https://x/"}, "-geohash"},
		{"bad hint country", []string{"-proxy", "https://127.0.0.1:1", "-geohash", "u4pruy-DNK", "fetch", "https://x/"}, "-geohash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := fetch(t, tc.args...)
			var usage *cli.UsageError
			if !errors.As(err, &usage) {
				t.Fatalf("error %v, want a usage error", err)
			}
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "usage: masque-client") {
				t.Errorf("stderr lacks %q and the usage:\n%s", tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
		})
	}
}

// TestRefusedByName checks that a target named by a host name that resolves
// to loopback is refused like the literal, and the client says why.
func TestRefusedByName(t *testing.T) {
	proxy := startProxy(t, false)
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(serveBody))
	_, _, err := fetch(t, "-proxy", proxy, "-ca", caFile(t), "fetch", "https://localhost:"+strconv.Itoa(origin.Port)+"/")
	if err == nil || !strings.Contains(err.Error(), "destination_ip_prohibited") {
		t.Fatalf("error %v, want destination_ip_prohibited", err)
	}
}
