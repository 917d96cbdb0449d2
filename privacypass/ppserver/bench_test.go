package ppserver

import (
	"context"
	"testing"
	"time"

	"github.com/masqued/masqued/privacypass"
)

// Per-core throughput of the issuer's and the proxy's work:
//
//	go test -run '^$' -bench . -cpu 1 ./privacypass/

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkVerify(b *testing.B) {
	for _, sk := range testKeys() {
		var tok privacypass.Token
		if err := tok.UnmarshalBinary(mint(b, sk, testChallenge)); err != nil {
			b.Fatal(err)
		}
		var v privacypass.Verifier = sk
		if sk.Public().Type == privacypass.TypePublic {
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
		raw, _ := (&privacypass.TokenChallenge{Type: sk.Public().Type, IssuerName: "issuer.example"}).MarshalBinary()
		p, err := sk.Public().NewPendingToken(raw, nil)
		if err != nil {
			b.Fatal(err)
		}
		var req privacypass.TokenRequest
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

func (alwaysFresh) Spend(context.Context, [privacypass.KeyIDLen]byte, [privacypass.NonceLen]byte, time.Time) (bool, error) {
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
	r := tunnelRequest(privacypass.FormatCredentials(mint(b, sk, testChallenge)))
	for b.Loop() {
		if err := rd.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}
