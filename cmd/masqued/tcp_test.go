package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/testnet"
)

// trust returns a TLS config that trusts the certificate masqued printed.
func trust(t *testing.T, certPath string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool}
}

// checkTCPFront opens a TCP and a UDP tunnel over HTTP/2 to masqued at addr.
func checkTCPFront(t *testing.T, addr, certPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := h2.Dial(ctx, "https://"+addr, h2.Config{TLSConfig: trust(t, certPath)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Protocol() != "h2" {
		t.Fatalf("protocol %q, want h2", c.Protocol())
	}
	u, err := c.ListenUDP(ctx, testnet.UDPEcho(t, testnet.IPv4).String())
	if err != nil {
		t.Fatalf("CONNECT-UDP over HTTP/2: %v", err)
	}
	defer u.Close()
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := u.WriteTo([]byte("over h2"), nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _, err := u.ReadFrom(buf); err != nil || string(buf[:n]) != "over h2" {
		t.Fatalf("echo %q, %v", buf[:n], err)
	}
	conn, err := c.DialTCP(ctx, testnet.TCPEcho(t, testnet.IPv4).String())
	if err != nil {
		t.Fatalf("CONNECT over HTTP/2: %v", err)
	}
	conn.Close()
}

// TestServeTCP checks that masqued serves the TCP front on the port of the
// UDP one, with Alt-Svc naming that port, and that -no-tcp turns it off.
func TestServeTCP(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	d := start(t, "-listen", "127.0.0.1:0", "-allow-private-targets")
	checkTCPFront(t, d.addr, d.certPath)
	tr := &http.Transport{TLSClientConfig: trust(t, d.certPath)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + d.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := strings.Cut(d.addr, ":")
	if got, want := resp.Header.Get("Alt-Svc"), `h3=":`+port+`"`; got != want {
		t.Errorf("Alt-Svc %q, want %q", got, want)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	d = start(t, "-listen", "127.0.0.1:0", "-no-tcp")
	if _, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + d.addr + "/"); err == nil {
		t.Error("-no-tcp: the TCP port answered")
	}
}

// TestBinaryEnablesExtendedConnect runs the masqued binary as a user would,
// without GODEBUG, and expects CONNECT-UDP over HTTP/2 to work: the binary
// must re-execute itself with http2xconnect=1.
func TestBinaryEnablesExtendedConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds masqued")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "masqued")
	if err := proc.GoBuild(ctx, filepath.Join("cmd", "masqued"), bin); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GODEBUG", "") // as on a user's machine
	dir := t.TempDir()
	p, err := proc.Start(ctx, bin, "-listen", "127.0.0.1:0", "-allow-private-targets", "-cert-out", filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	addr, err := p.Line("listening on ")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Stderr())
	}
	certPath, err := p.Line("certificate ")
	if err != nil {
		t.Fatal(err)
	}
	checkTCPFront(t, addr, certPath)
}
