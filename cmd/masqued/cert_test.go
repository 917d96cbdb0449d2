package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// spki is the base64 SHA-256 of the public key of the certificate in the
// PEM file at path: what Chromium's --ignore-certificate-errors-spki-list
// pins.
func spki(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestCertKept starts masqued, stops it and starts it again on the same
// state: the certificate, and so its SPKI, is the same, and a client that
// kept a copy of the first start's certificate as its -ca connects to the
// second start over both fronts. A fresh -cert-out is a fresh certificate,
// which is what keeps tests that pass one apart.
func TestCertKept(t *testing.T) {
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("kept"))
	}))
	echo, udpEcho := testnet.TCPEcho(t, testnet.IPv4), testnet.UDPEcho(t, testnet.IPv4)
	for _, tc := range []struct {
		name     string
		args     func(state string) []string
		certFile func(state string) string // where masqued keeps the certificate
	}{
		{
			name:     "state directory",
			args:     func(string) []string { return nil },
			certFile: func(state string) string { return filepath.Join(state, "masqued", "cert.pem") },
		},
		{
			name:     "cert-out",
			args:     func(state string) []string { return []string{"-cert-out", filepath.Join(state, "out", "proxy.pem")} },
			certFile: func(state string) string { return filepath.Join(state, "out", "proxy.pem") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			t.Setenv("XDG_STATE_HOME", state)
			args := append([]string{"-listen", "127.0.0.1:0", "-allow-private-targets"}, tc.args(state)...)
			d := start(t, args...)
			want := tc.certFile(state)
			if d.certPath != want {
				t.Fatalf("certificate %q, want %q", d.certPath, want)
			}
			checkMode(t, filepath.Dir(want), fs.ModeDir|0o700)
			checkMode(t, want, 0o644)
			checkMode(t, certs.KeyFileFor(want), 0o600)
			pin := spki(t, d.certPath)
			// The client's copy, as `masque-client -ca` would read it.
			ca := filepath.Join(t.TempDir(), "ca.pem")
			copyFile(t, d.certPath, ca)
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}

			d = start(t, args...)
			if d.certPath != want {
				t.Errorf("second start: certificate %q, want %q", d.certPath, want)
			}
			if got := spki(t, d.certPath); got != pin {
				t.Errorf("second start: SPKI %s, want the first start's %s", got, pin)
			}
			tlsConf := trust(t, ca)
			body, _ := proxytest.FetchH3(t, "https://"+d.addr, h3.Config{TLSConfig: tlsConf}, origin, "/")
			if string(body) != "kept" {
				t.Errorf("fetched %q through the second start", body)
			}
			newTunnels(t, testnet.Context(t, time.Minute), d.addr, tlsConf, client.HTTP2, echo, udpEcho)
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}

			if tc.name == "cert-out" {
				if _, err := os.Stat(filepath.Join(state, "masqued")); err == nil {
					t.Error("-cert-out: masqued wrote into the state directory too")
				}
				other := start(t, "-listen", "127.0.0.1:0", "-cert-out", filepath.Join(t.TempDir(), "proxy.pem"))
				if spki(t, other.certPath) == pin {
					t.Error("a fresh -cert-out got the kept certificate")
				}
			}
		})
	}
}

// TestCertReplaced starts masqued as a process on a kept certificate that it
// must not serve, and checks that it makes a new one (a new SPKI, the key
// 0600), says why in one log line, and serves it; on a certificate it may
// serve, it logs no such line and serves the same one.
func TestCertReplaced(t *testing.T) {
	bin := buildMasqued(t)
	for _, tc := range []struct {
		name   string
		listen string
		keep   func(t *testing.T, certFile string) // nil: nothing kept
		reason string                              // in the log line; "" = kept, no line
	}{
		{name: "none kept", listen: "127.0.0.1:0", reason: "none kept yet"},
		{name: "good", listen: "127.0.0.1:0", keep: storeGood},
		{name: "good, another loopback name", listen: "[::1]:0", keep: storeGood},
		{name: "expired", listen: "127.0.0.1:0", keep: storeExpired, reason: "expired"},
		{name: "listen host not covered", listen: "127.0.0.2:0", keep: storeGood, reason: "does not cover 127.0.0.2"},
		{name: "corrupt key", listen: "127.0.0.1:0", reason: "PEM", keep: func(t *testing.T, certFile string) {
			storeGood(t, certFile)
			if err := os.WriteFile(certs.KeyFileFor(certFile), []byte("-----BEGIN PRIVATE KEY-----\nbroken\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile := filepath.Join(t.TempDir(), "cert.pem")
			var before string
			if tc.keep != nil {
				tc.keep(t, certFile)
				before = spki(t, certFile)
			}
			p := startProcess(t, bin, "-listen", tc.listen, "-cert-out", certFile, "-log-format", "json")
			addr := p.line(t, "listening on ")
			if got := p.line(t, "certificate "); got != certFile {
				t.Fatalf("certificate %q, want %q", got, certFile)
			}
			var lines []string
			for line := range strings.Lines(p.log(t)) {
				if strings.Contains(line, `"msg":"making a new self-signed certificate"`) {
					lines = append(lines, line)
				}
			}
			after := spki(t, certFile)
			switch {
			case tc.reason == "":
				if len(lines) != 0 || after != before {
					t.Errorf("a good certificate was replaced: %q", lines)
				}
			case len(lines) != 1 || !strings.Contains(lines[0], tc.reason):
				t.Errorf("log lines %q, want one with %q", lines, tc.reason)
			case after == before:
				t.Error("the certificate was not replaced")
			}
			checkMode(t, certs.KeyFileFor(certFile), 0o600)
			ctx := testnet.Context(t, 30*time.Second)
			c, err := h3.Dial(ctx, "https://"+addr, h3.Config{TLSConfig: trust(t, certFile)})
			if err != nil {
				t.Fatalf("connecting with the certificate masqued printed: %v", err)
			}
			c.Close()
		})
	}
}

// storeGood keeps a fresh self-signed certificate for loopback at certFile.
func storeGood(t *testing.T, certFile string) {
	t.Helper()
	cert, _, err := certs.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	store(t, certFile, cert)
}

// storeExpired keeps at certFile a self-signed certificate for loopback
// that expired an hour ago.
func storeExpired(t *testing.T, certFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(-time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	store(t, certFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
}

func store(t *testing.T, certFile string, cert tls.Certificate) {
	t.Helper()
	if err := (certs.Kept{CertFile: certFile, KeyFile: certs.KeyFileFor(certFile)}).Store(cert); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
