package privacypass

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/cloudflare/circl/oprf"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issue has sk answer p's request, as the issuer does.
func issue(t testing.TB, sk *PrivateKey, p *PendingToken) []byte {
	t.Helper()
	var req TokenRequest
	if err := req.UnmarshalBinary(p.Request); err != nil {
		t.Fatal(err)
	}
	resp, err := sk.Issue(&req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// finalizeAs finalises resp and checks that the token is vector i's, want.
func finalizeAs(t *testing.T, i int, p *PendingToken, resp []byte, want string) *Token {
	t.Helper()
	tok, err := p.Finalize(resp)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tok.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(enc); got != want {
		t.Fatalf("vector %d: token\n got %s\nwant %s", i, got, want)
	}
	return tok
}

// TestRFC9578Type2 reproduces the token request, the issuer's response and
// the token of every RFC 9578 Appendix A.2 vector byte for byte, and
// verifies the token.
func TestRFC9578Type2(t *testing.T) {
	sk, err := ParsePrivateKeyPEM([]byte(rfc9578Type2Key))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sk.Public().Encoded()); got != rfc9578Type2PublicKey {
		t.Fatalf("token key encoding:\n got %s\nwant %s", got, rfc9578Type2PublicKey)
	}
	pk, err := ParsePublicKey(TypePublic, unhex(t, rfc9578Type2PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range rfc9578Type2 {
		rnd := bytes.NewReader(unhex(t, v.nonce+v.salt+v.blind))
		p, err := pk.NewPendingToken(unhex(t, v.challenge), rnd)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if got := hex.EncodeToString(p.Request); got != v.request {
			t.Fatalf("vector %d: token request\n got %s\nwant %s", i, got, v.request)
		}
		resp := issue(t, sk, p)
		if got := hex.EncodeToString(resp); got != v.response {
			t.Fatalf("vector %d: token response\n got %s\nwant %s", i, got, v.response)
		}
		finalizeAs(t, i, p, resp, v.token)
		var parsed Token
		if err := parsed.UnmarshalBinary(unhex(t, v.token)); err != nil {
			t.Fatal(err)
		}
		if err := pk.Verify(&parsed); err != nil {
			t.Errorf("vector %d: %v", i, err)
		}
		parsed.Nonce[0] ^= 1
		if err := pk.Verify(&parsed); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("vector %d: a changed nonce verified: %v", i, err)
		}
	}
}

// TestRFC9578Type1 reproduces the token request and the issuer's evaluated
// element of every RFC 9578 Appendix A.1 vector, finalises the RFC's own
// response (its DLEQ proof is randomised) into the RFC's token, and verifies
// that with the issuer key.
func TestRFC9578Type1(t *testing.T) {
	for i, v := range rfc9578Type1 {
		raw := new(oprf.PrivateKey)
		if err := raw.UnmarshalBinary(oprf.SuiteP384, unhex(t, v.skS)); err != nil {
			t.Fatal(err)
		}
		sk, err := newPrivateKey1(raw, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(sk.Public().Encoded()); got != v.pkS {
			t.Fatalf("vector %d: public key %s, want %s", i, got, v.pkS)
		}
		rnd := bytes.NewReader(unhex(t, v.nonce+v.blind))
		p, err := sk.Public().NewPendingToken(unhex(t, v.challenge), rnd)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(p.Request); got != v.request {
			t.Fatalf("vector %d: token request\n got %s\nwant %s", i, got, v.request)
		}
		resp := issue(t, sk, p)
		if got, want := hex.EncodeToString(resp[:p384Point]), v.response[:2*p384Point]; got != want {
			t.Fatalf("vector %d: evaluated element\n got %s\nwant %s", i, got, want)
		}
		if _, err := p.Finalize(resp); err != nil {
			t.Fatalf("vector %d: finalising our own response: %v", i, err)
		}
		tok := finalizeAs(t, i, p, unhex(t, v.response), v.token)
		if err := sk.Verify(tok); err != nil {
			t.Errorf("vector %d: %v", i, err)
		}
		if err := sk.Public().Verify(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("vector %d: a public key verified a type-1 token: %v", i, err)
		}
		tok.Authenticator[0] ^= 1
		if err := sk.Verify(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("vector %d: a changed authenticator verified: %v", i, err)
		}
	}
}

// TestRFC9577Tokens checks the challenge encoding and the authenticator
// input of RFC 9577 Appendix A.2.
func TestRFC9577Tokens(t *testing.T) {
	for i, v := range rfc9577Tokens {
		c := TokenChallenge{Type: TokenType(v.tokenType), IssuerName: string(unhex(t, v.issuer)),
			RedemptionContext: unhex(t, v.context), OriginInfo: string(unhex(t, v.origin))}
		enc, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back TokenChallenge
		if err := back.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
		if back.IssuerName != c.IssuerName || !bytes.Equal(back.RedemptionContext, c.RedemptionContext) || back.OriginInfo != c.OriginInfo {
			t.Errorf("vector %d: challenge round trip: %+v != %+v", i, back, c)
		}
		tok := Token{Type: c.Type, ChallengeDigest: sha256.Sum256(enc)}
		copy(tok.Nonce[:], unhex(t, v.nonce))
		copy(tok.KeyID[:], unhex(t, v.keyID))
		if got := hex.EncodeToString(tok.AuthenticatorInput()); got != v.input {
			t.Errorf("vector %d: authenticator input\n got %s\nwant %s", i, got, v.input)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good := unhex(t, rfc9578Type2[0].token)
	var tok Token
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"long":      append(bytes.Clone(good), 0),
		"grease":    append([]byte{0x0a, 0x0a}, good[2:]...),
	} {
		if err := tok.UnmarshalBinary(b); err == nil {
			t.Errorf("token %s: no error", name)
		}
	}
	var c TokenChallenge
	for name, b := range map[string][]byte{
		"empty":       nil,
		"no issuer":   {0, 2, 0, 0, 0, 0, 0},
		"context 5":   {0, 2, 0, 1, 'a', 5, 1, 2, 3, 4, 5, 0, 0},
		"trailing":    {0, 2, 0, 1, 'a', 0, 0, 0, 9},
		"short field": {0, 2, 0, 9, 'a'},
	} {
		if err := c.UnmarshalBinary(b); err == nil {
			t.Errorf("challenge %s: no error", name)
		}
	}
	var r TokenRequest
	req := unhex(t, rfc9578Type1[0].request)
	if err := r.UnmarshalBinary(req[:len(req)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short type-1 request: %v", err)
	}
	if err := r.UnmarshalBinary(append([]byte{0, 3}, req[2:]...)); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("type-3 request: %v", err)
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	good := unhex(t, rfc9578Type2PublicKey)
	bad := bytes.Clone(good)
	bad[len(rsaPSSAlgorithm)] ^= 0xff // inside the salt length
	for name, b := range map[string][]byte{
		"truncated":  good[:len(good)-1],
		"params":     bad,
		"point":      unhex(t, rfc9578Type1[0].pkS)[1:],
		"trailing":   append(bytes.Clone(good), 0),
		"empty":      nil,
		"plain spki": unhex(t, "30820122300d06092a864886f70d01010105000382010f00"),
	} {
		if _, err := ParsePublicKey(TypePublic, b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ParsePublicKey(TypePrivate, unhex(t, rfc9578Type1[0].pkS)[:48]); err == nil {
		t.Error("48-byte type-1 key: no error")
	}
}

func TestGeneratedKeysRoundTrip(t *testing.T) {
	for _, typ := range []TokenType{TypePrivate, TypePublic} {
		sk, err := GenerateKey(typ, time.Unix(1700000000, 0), time.Unix(1800000000, 0))
		if err != nil {
			t.Fatal(err)
		}
		pemBytes, err := sk.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivateKeyPEM(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if back.Public().ID() != sk.Public().ID() || !back.Public().NotBefore.Equal(sk.Public().NotBefore) || !back.Public().NotAfter.Equal(sk.Public().NotAfter) {
			t.Fatalf("%v: PEM round trip changed the key", typ)
		}
		c := TokenChallenge{Type: typ, IssuerName: "issuer.example"}
		enc, _ := c.MarshalBinary()
		p, err := sk.Public().NewPendingToken(enc, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := issue(t, back, p)
		tok, err := p.Finalize(resp)
		if err != nil {
			t.Fatal(err)
		}
		if err := sk.Verify(tok); err != nil {
			t.Errorf("%v: %v", typ, err)
		}
	}
}

func TestBlindSignRejectsOutOfRange(t *testing.T) {
	sk, err := GenerateKey(TypePublic, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	req := TokenRequest{Type: TypePublic, TruncatedKeyID: sk.Public().id[KeyIDLen-1], BlindedMsg: bytes.Repeat([]byte{0xff}, rsaNk)}
	if _, err := sk.Issue(&req); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a blinded message above the modulus: %v", err)
	}
}
