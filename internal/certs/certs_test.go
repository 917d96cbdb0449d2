package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestSelfSigned: the certificate verifies, through Pool, for every name
// masqued's default configuration is reached by, and for no other.
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
}
