package privacypass

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// Per-core throughput of the issuer's and the proxy's work:
//
//	go test -run '^$' -bench . -cpu 1 ./privacypass/

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkVerify(b *testing.B) {
	for _, sk := range testKeys() {
		var tok Token
		if err := tok.UnmarshalBinary(mint(b, sk, testChallenge)); err != nil {
			b.Fatal(err)
		}
		var v Verifier = sk
		if sk.Public().Type == TypePublic {
			v = sk.Public() // what a proxy without the issuer's key holds
		}
		b.Run(sk.Public().Type.String()[:6], func(b *testing.B) {
			for b.Loop() {
				if err := v.Verify(&tok); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, sk := range testKeys() {
		raw, _ := (&TokenChallenge{Type: sk.Public().Type, IssuerName: "issuer.example"}).MarshalBinary()
		p, err := sk.Public().NewPendingToken(raw, nil)
		if err != nil {
			b.Fatal(err)
		}
		var req TokenRequest
		if err := req.UnmarshalBinary(p.Request); err != nil {
			b.Fatal(err)
		}
		b.Run(sk.Public().Type.String()[:6], func(b *testing.B) {
			for b.Loop() {
				if _, err := sk.Issue(&req); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
	}
}

// alwaysFresh is a SpentStore that never remembers, so one token can be
// redeemed again and again by the benchmark.
type alwaysFresh struct{}

func (alwaysFresh) Spend(context.Context, [KeyIDLen]byte, [NonceLen]byte, time.Time) (bool, error) {
	return true, nil
}

// BenchmarkAuthenticate is the proxy's whole check of a type-2 token: the
// header, the structure, the challenge, the signature and a spent store.
func BenchmarkAuthenticate(b *testing.B) {
	sk := testKeys()[1]
	rd, err := NewRedeemer(RedeemerConfig{IssuerName: testChallenge.IssuerName, OriginInfo: testChallenge.OriginInfo,
		Keys: StaticKeys{sk.Public()}, Spent: alwaysFresh{}})
	if err != nil {
		b.Fatal(err)
	}
	r := tunnelRequest(FormatCredentials(mint(b, sk, testChallenge)))
	for b.Loop() {
		if err := rd.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
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
