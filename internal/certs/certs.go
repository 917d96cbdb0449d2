// Package certs makes the self-signed certificate that lets masqued run with
// no configuration at all, and that tests use on loopback, and keeps it on
// disk (kept.go) so that the clients that trust it go on trusting it after a
// restart.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"time"
)

// defaultHosts are what every self-signed certificate covers: the names of
// masqued's default -listen address.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Lifetime is how long a self-signed certificate is valid.
const Lifetime = 365 * 24 * time.Hour

// SelfSigned returns a fresh ECDSA P-256 certificate for localhost,
// 127.0.0.1, ::1 and hosts (IP addresses or DNS names), valid for Lifetime,
// and its PEM encoding. Clients trust exactly it (Go, curl and Chromium take
// a self-signed server certificate as its own trust anchor); it is not a CA,
// because Firefox refuses a CA certificate as a server's.
func SelfSigned(hosts ...string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "masqued self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	seen := map[string]bool{}
	for _, h := range append(slices.Clip(defaultHosts), hosts...) {
		ip, err := netip.ParseAddr(h)
		if err == nil {
			ip = ip.WithZone("").Unmap()
			h = ip.String()
		}
		switch {
		case seen[h]:
		case err == nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
		seen[h] = true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("creating certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pemBytes, nil
}

// Pool returns a pool holding the certificates in pemBytes.
func Pool(pemBytes []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in PEM data")
	}
	return p, nil
}
