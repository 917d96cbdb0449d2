package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// testBody is 1 MiB of known, non-repeating-ish bytes.
var testBody = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}()

// startOrigin runs an HTTP/3 origin on host (a loopback IP) serving testBody
// at /data. It returns the origin's base URL and its certificate's PEM file.
func startOrigin(t *testing.T, host string) (string, string) {
	t.Helper()
	conn, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	cert, certPEM, err := selfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) { w.Write(testBody) })
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		// masque-go's proxy tears the tunnel down when the origin's PMTU
		// probes do not fit into a DATAGRAM frame of the outer connection.
		QUICConfig: &quic.Config{DisablePathMTUDiscovery: true},
		Handler:    mux,
	}
	go srv.Serve(conn)
	t.Cleanup(func() { srv.Close(); conn.Close() })
	return "https://" + conn.LocalAddr().String(), caFile
}

// startProxy runs the "proxy" subcommand in-process and returns its bound
// address and the PEM file of its generated certificate.
func startProxy(t *testing.T, args ...string) (string, string) {
	t.Helper()
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runProxy(ctx, append([]string{"-cert-out", certFile}, args...), pw)
		pw.CloseWithError(fmt.Errorf("proxy exited: %v", err))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading proxy stdout: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "listening on ")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("unexpected proxy stdout line %q", line)
	}
	go io.Copy(io.Discard, pr)
	return addr, certFile
}

var statsLine = regexp.MustCompile(`^bytes=(\d+) seconds=[0-9.]+ mbit_per_s=[0-9.]+ status=(\d+)$`)

func TestClientThroughProxy(t *testing.T) {
	proxyAddr, proxyCA := startProxy(t)
	// The default proxy template names localhost; the client uses
	// 127.0.0.1, which the default (non-strict) host matching accepts.
	tmpl := "https://" + proxyAddr + "/.well-known/masque/udp/{target_host}/{target_port}/"

	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			originURL, originCA := startOrigin(t, host)
			out := filepath.Join(t.TempDir(), "body")
			var stderr bytes.Buffer
			err := runClient(context.Background(), []string{
				"-template", tmpl, "-ca", proxyCA, "-origin-ca", originCA,
				"-o", out, "-n", "3", "-disable-pmtud", originURL + "/data",
			}, io.Discard, &stderr)
			if err != nil {
				t.Fatalf("client: %v (stderr: %s)", err, stderr.String())
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Repeat(testBody, 3); !bytes.Equal(got, want) {
				t.Fatalf("body mismatch: got %d bytes, want %d", len(got), len(want))
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 3 {
				t.Fatalf("want 3 stats lines, got %q", stderr.String())
			}
			for _, l := range lines {
				m := statsLine.FindStringSubmatch(l)
				if m == nil || m[1] != fmt.Sprint(len(testBody)) || m[2] != "200" {
					t.Fatalf("bad stats line %q", l)
				}
			}
		})
	}

	t.Run("not-found", func(t *testing.T) {
		originURL, originCA := startOrigin(t, "127.0.0.1")
		var stderr bytes.Buffer
		err := runClient(context.Background(), []string{
			"-template", tmpl, "-ca", proxyCA, "-origin-ca", originCA, originURL + "/missing",
		}, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(stderr.String(), "status=404") {
			t.Fatalf("want 404 failure, got err=%v stderr=%q", err, stderr.String())
		}
	})

	t.Run("wrong-template-path", func(t *testing.T) {
		originURL, originCA := startOrigin(t, "127.0.0.1")
		err := runClient(context.Background(), []string{
			"-template", "https://" + proxyAddr + "/masque?h={target_host}&p={target_port}",
			"-ca", proxyCA, "-origin-ca", originCA, originURL + "/data",
		}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("want tunnel refused with 400, got %v", err)
		}
	})
}

func TestStrictHost(t *testing.T) {
	proxyAddr, proxyCA := startProxy(t, "-strict-host")
	originURL, originCA := startOrigin(t, "127.0.0.1")
	_, port, _ := net.SplitHostPort(proxyAddr)
	run := func(host string) error {
		tmpl := "https://" + net.JoinHostPort(host, port) + "/.well-known/masque/udp/{target_host}/{target_port}/"
		return runClient(context.Background(), []string{
			"-template", tmpl, "-ca", proxyCA, "-origin-ca", originCA, "-o", os.DevNull, originURL + "/data",
		}, io.Discard, io.Discard)
	}
	if err := run("127.0.0.1"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("127.0.0.1 vs template host localhost: want 400, got %v", err)
	}
	if err := run("localhost"); err != nil {
		t.Fatalf("localhost: %v", err)
	}
}

// TestUDPThroughProxy echoes packets through the proxy with the udp
// subcommand, and fails against a port where nothing echoes.
func TestUDPThroughProxy(t *testing.T) {
	proxyAddr, proxyCA := startProxy(t)
	tmpl := "https://" + proxyAddr + "/.well-known/masque/udp/{target_host}/{target_port}/"
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { echo.Close(); <-done })

	var stdout bytes.Buffer
	if err := runUDP(context.Background(), []string{"-template", tmpl, "-ca", proxyCA, "-n", "5", "-tunnels", "3", echo.LocalAddr().String()}, &stdout); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "echoed 15\n" {
		t.Fatalf("stdout %q", stdout.String())
	}
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := runUDP(ctx, []string{"-template", tmpl, "-ca", proxyCA, "-n", "1", silent.LocalAddr().String()}, io.Discard); err == nil {
		t.Fatal("no error without an echo")
	}
}
