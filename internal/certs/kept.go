package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// renewFraction: a kept certificate is replaced once less than
// 1/renewFraction of its lifetime is left (36 days of a year), so that a
// start renews it well before it expires and a masqued that then runs for
// weeks still serves a valid certificate.
const renewFraction = 10

// errNoneKept is Load's error for a first start.
var errNoneKept = errors.New("none kept yet")

// Kept is a self-signed certificate kept in two PEM files, so that masqued
// serves the same certificate and key from one start to the next, as Caddy
// and mkcert keep theirs: clients' -ca files and Chromium's pin of the key's
// hash go on working.
type Kept struct {
	// CertFile holds the certificate (mode 0644): what clients trust.
	CertFile string
	// KeyFile holds its private key, PKCS #8 (mode 0600).
	KeyFile string
	// Hosts are the IP addresses and DNS names that the certificate must
	// cover besides localhost, 127.0.0.1 and ::1.
	Hosts []string
}

// KeyFileFor is the key file beside certFile, named as mkcert names its
// keys: cert.pem has cert-key.pem.
func KeyFileFor(certFile string) string {
	ext := filepath.Ext(certFile)
	return strings.TrimSuffix(certFile, ext) + "-key" + ext
}

// Load returns the kept certificate if it is still good at now: both files
// read, the key is the certificate's, it is valid and more than a tenth of
// its lifetime is left, and it covers every host. Otherwise the error says
// why not, in words for a log line.
func (k Kept) Load(now time.Time) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(k.CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, errNoneKept
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(k.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading its key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading it with %s: %w", k.KeyFile, err)
	}
	leaf := cert.Leaf // set by X509KeyPair
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	switch {
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, fmt.Errorf("the certificate is not valid before %s", leaf.NotBefore.Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, fmt.Errorf("the certificate expired at %s", leaf.NotAfter.Format(time.RFC3339))
	case leaf.IsCA:
		// Older masqueds made their certificate its own CA, which Firefox
		// refuses for a server (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY).
		return tls.Certificate{}, errors.New("the certificate is a CA certificate, which browsers refuse for a server")
	case leaf.NotAfter.Sub(now) < lifetime/renewFraction:
		return tls.Certificate{}, fmt.Errorf("the certificate expires at %s, in less than a tenth of its lifetime", leaf.NotAfter.Format(time.RFC3339))
	}
	for _, h := range append(slices.Clip(defaultHosts), k.Hosts...) {
		if err := leaf.VerifyHostname(h); err != nil {
			return tls.Certificate{}, fmt.Errorf("the certificate does not cover %s", h)
		}
	}
	return cert, nil
}

// MarshalPEM returns cert's certificate chain and its private key in PEM.
// Their concatenation is a pair that tls.X509KeyPair(both, both) reads.
func MarshalPEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the key: %w", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Store writes cert to k's files unless they hold it already, creating
// their directories (0700). Each file is replaced atomically, the key
// first, so that a reader never finds a file half written, and the
// certificate file never holds a certificate whose key is not in place.
func (k Kept) Store(cert tls.Certificate) error {
	certPEM, keyPEM, err := MarshalPEM(cert)
	if err != nil {
		return err
	}
	if holds(k.KeyFile, keyPEM) && holds(k.CertFile, certPEM) {
		return nil
	}
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{{k.KeyFile, keyPEM, 0o600}, {k.CertFile, certPEM, 0o644}} {
		if err := writeAtomic(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("keeping the self-signed certificate: %w", err)
		}
	}
	return nil
}

// holds reports whether the file at path holds exactly data.
func holds(path string, data []byte) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, data)
}

// writeAtomic replaces path with data and mode through a temporary file in
// the same directory and a rename. The temporary file is 0600 from the
// start, so a key is never readable by others, not even for a moment.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
