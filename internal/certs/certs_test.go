package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfSigned: the certificate verifies, through Pool, for every name
// masqued's default configuration is reached by, and for no other; and it is
// a server's certificate, not a CA.
func TestSelfSigned(t *testing.T) {
	cert, pemBytes, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Pool(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "example.com": false, "10.0.0.1": false} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: time.Now()})
		if (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok=%v", name, err, ok)
		}
	}
	if _, err := Pool([]byte("not PEM")); err == nil {
		t.Error("Pool accepted data without a certificate")
	}
	// Firefox refuses a CA certificate as a server's.
	if cert.Leaf.IsCA || cert.Leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Error("the self-signed certificate is a CA")
	}
}

// TestSelfSignedHosts: hosts join the default names, an IPv6 zone and a
// repeated default are dropped rather than written into the certificate.
func TestSelfSignedHosts(t *testing.T) {
	cert, _, err := SelfSigned("127.0.0.2", "proxy.example", "fe80::1%lo", "localhost", "::1")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.2", "proxy.example", "fe80::1", "localhost", "127.0.0.1", "::1"} {
		if err := cert.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if got := len(cert.Leaf.DNSNames) + len(cert.Leaf.IPAddresses); got != 6 {
		t.Errorf("DNS names %q, IP addresses %v: want 6 in all", cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
}

func TestKeyFileFor(t *testing.T) {
	for in, want := range map[string]string{
		"/s/masqued/cert.pem": "/s/masqued/cert-key.pem",
		"/tmp/a.b/cert":       "/tmp/a.b/cert-key",
		"masqued.crt":         "masqued-key.crt",
	} {
		if got := KeyFileFor(in); got != want {
			t.Errorf("KeyFileFor(%q) = %q, want %q", in, got, want)
		}
	}
}

// newKept returns a Kept in a fresh directory, with a certificate stored.
func newKept(t *testing.T, hosts ...string) (Kept, tls.Certificate) {
	t.Helper()
	certFile := filepath.Join(t.TempDir(), "state", "cert.pem")
	k := Kept{CertFile: certFile, KeyFile: KeyFileFor(certFile), Hosts: hosts}
	cert, _, err := SelfSigned(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Store(cert); err != nil {
		t.Fatal(err)
	}
	return k, cert
}

// TestKeptStoreLoad: a stored certificate loads back, the very same, from
// files with the modes it promises; storing it again writes nothing.
func TestKeptStoreLoad(t *testing.T) {
	k, cert := newKept(t, "127.0.0.2")
	for path, want := range map[string]fs.FileMode{filepath.Dir(k.CertFile): fs.ModeDir | 0o700, k.CertFile: 0o644, k.KeyFile: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
		}
	}
	got, err := k.Load(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Certificate[0], cert.Certificate[0]) || !got.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(cert.Leaf.PublicKey) {
		t.Error("Load returned another certificate than the one stored")
	}

	// Store leaves files that hold the certificate alone.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, f := range []string{k.CertFile, k.KeyFile} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Store(got); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{k.CertFile, k.KeyFile} {
		if fi, err := os.Stat(f); err != nil || !fi.ModTime().Equal(old) {
			t.Errorf("%s rewritten by a Store of the certificate it holds", f)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(k.CertFile))
	if err != nil || len(entries) != 2 {
		t.Errorf("the directory holds %v (%v), want the two files only", entries, err)
	}
}

// TestKeptRefused: Load refuses a kept certificate that must not be served
// any longer, and says why.
func TestKeptRefused(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, k *Kept) // nil: none
		at    time.Time
		want  string // in the error
	}{
		{"missing certificate", func(t *testing.T, k *Kept) { remove(t, k.CertFile) }, now, "none kept yet"},
		{"missing key", func(t *testing.T, k *Kept) { remove(t, k.KeyFile) }, now, "reading its key"},
		{"corrupt key", func(t *testing.T, k *Kept) { write(t, k.KeyFile, "not a key") }, now, "PEM"},
		{"corrupt certificate", func(t *testing.T, k *Kept) {
			write(t, k.CertFile, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, now, "loading it with"},
		{"another key", func(t *testing.T, k *Kept) {
			other, _ := newKept(t)
			if err := os.Rename(other.KeyFile, k.KeyFile); err != nil {
				t.Fatal(err)
			}
		}, now, "does not match"},
		{"expired", nil, now.Add(Lifetime + time.Hour), "expired"},
		{"near expiry", nil, now.Add(Lifetime - Lifetime/20), "tenth of its lifetime"},
		{"not yet valid", nil, now.Add(-2 * time.Hour), "not valid before"},
		{"another host", func(t *testing.T, k *Kept) { k.Hosts = append(k.Hosts, "192.0.2.1") }, now, "does not cover 192.0.2.1"},
		{"another name", func(t *testing.T, k *Kept) { k.Hosts = []string{"proxy.example"} }, now, "does not cover proxy.example"},
		{"a CA, as older masqueds made", func(t *testing.T, k *Kept) { writeCA(t, k) }, now, "a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := newKept(t, "127.0.0.2")
			if tc.spoil != nil {
				tc.spoil(t, &k)
			}
			_, err := k.Load(tc.at)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// Still good with a tenth and a little of its lifetime left.
	k, _ := newKept(t)
	if _, err := k.Load(now.Add(Lifetime - Lifetime/10 - 2*time.Hour)); err != nil {
		t.Errorf("Load before the renewal margin: %v", err)
	}
}

// writeCA keeps a self-signed certificate that is its own CA, for every
// name the kept one covered, as masqued made before Firefox needed a leaf.
func writeCA(t *testing.T, k *Kept) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(Lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(127, 0, 0, 2)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, k.CertFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, k.KeyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}

// TestKeptStoreReplaces: Store replaces a corrupt pair, and a key file
// left readable by others gets the owner-only mode back.
func TestKeptStoreReplaces(t *testing.T) {
	k, _ := newKept(t)
	write(t, k.KeyFile, "not a key")
	if err := os.Chmod(k.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	cert, _, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Store(cert); err != nil {
		t.Fatal(err)
	}
	got, err := k.Load(time.Now())
	if err != nil || !bytes.Equal(got.Certificate[0], cert.Certificate[0]) {
		t.Fatalf("Load after Store: %v", err)
	}
	if fi, err := os.Stat(k.KeyFile); err != nil || fi.Mode() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
