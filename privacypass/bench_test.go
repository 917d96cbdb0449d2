package privacypass

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkBlindSign compares the issuer's RSA blind signature (rsaSigner,
// with CRT) with circl's BlindSign (math/big, no CRT), which it replaces.
func BenchmarkBlindSign(b *testing.B) {
	sk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	blinded := make([]byte, sk.Size())
	if _, err := rand.Read(blinded[1:]); err != nil { // a leading zero keeps it below N
		b.Fatal(err)
	}
	ours, err := newRSASigner(sk)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		sign func([]byte) ([]byte, error)
	}{{"ours", ours.sign}, {"circl", blindrsa.NewSigner(sk).BlindSign}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.sign(blinded); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
	}
}
