package privacypass

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("privacypass: invalid token")

// PublicKey is an issuer's token key as published: what a client blinds
// against, and what verifies a type-2 token. It is immutable and safe for
// concurrent use.
type PublicKey struct {
	Type      TokenType
	NotBefore time.Time // when clients may start using it; zero = always
	NotAfter  time.Time // when the issuer retires it; zero = unknown
	encoded   []byte
	id        [KeyIDLen]byte
	rsa       *rsa.PublicKey  // type 2
	oprf      *oprf.PublicKey // type 1
}

// ParsePublicKey decodes a token key: for type 1 a compressed P-384 point
// (49 bytes), for type 2 an RSASSA-PSS SubjectPublicKeyInfo.
func ParsePublicKey(t TokenType, encoded []byte) (*PublicKey, error) {
	k := &PublicKey{Type: t, encoded: bytes.Clone(encoded), id: keyID(encoded)}
	switch t {
	case TypePrivate:
		if len(encoded) != p384Point {
			return nil, malformed("token key: not a compressed P-384 point")
		}
		k.oprf = new(oprf.PublicKey)
		if err := k.oprf.UnmarshalBinary(oprf.SuiteP384, encoded); err != nil {
			return nil, fmt.Errorf("%w token key: %w", ErrMalformed, err)
		}
	case TypePublic:
		pk, err := parseRSAPSSKey(encoded)
		if err != nil {
			return nil, err
		}
		k.rsa = pk
	default:
		return nil, fmt.Errorf("%w: token type %v", ErrUnsupportedType, t)
	}
	return k, nil
}

// Encoded is the key's encoding, as in token-key and the issuer directory.
func (k *PublicKey) Encoded() []byte { return k.encoded }

// ID is token_key_id, SHA-256 of Encoded.
func (k *PublicKey) ID() [KeyIDLen]byte { return k.id }

// Public returns k, so that a PublicKey is a Verifier.
func (k *PublicKey) Public() *PublicKey { return k }

// Verify checks tok's authenticator. Only type-2 tokens can be checked with
// a public key; type 1 needs the issuer's PrivateKey.
func (k *PublicKey) Verify(tok *Token) error {
	if tok.Type != k.Type || tok.KeyID != k.id {
		return fmt.Errorf("%w: not issued under this key", ErrInvalidToken)
	}
	if k.Type != TypePublic {
		return fmt.Errorf("%w: a type-1 token needs the issuer's private key", ErrInvalidToken)
	}
	digest := sha512.Sum384(tok.AuthenticatorInput())
	if err := rsa.VerifyPSS(k.rsa, crypto.SHA384, digest[:], tok.Authenticator, &rsa.PSSOptions{SaltLength: sha512.Size384}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return nil
}

// Verifier checks tokens issued under one key. *PublicKey (type 2) and
// *PrivateKey (both types) are Verifiers.
type Verifier interface {
	Public() *PublicKey
	Verify(tok *Token) error
}

// PrivateKey is an issuer's signing key of either type. It is immutable and
// safe for concurrent use.
type PrivateKey struct {
	pub    *PublicKey
	rsa    *rsa.PrivateKey // type 2
	signer *rsaSigner
	oprf   *oprf.PrivateKey // type 1
	server oprf.VerifiableServer
}

// GenerateKey makes a new key of type t, used from notBefore and retired at
// notAfter.
func GenerateKey(t TokenType, notBefore, notAfter time.Time) (*PrivateKey, error) {
	switch t {
	case TypePrivate:
		// RFC 9578 §5.5: DeriveKeyPair(random(Ns), "PrivacyPass"); circl
		// wants a 32-byte seed.
		seed := make([]byte, 32)
		rand.Read(seed)
		sk, err := oprf.DeriveKey(oprf.SuiteP384, oprf.VerifiableMode, seed, []byte("PrivacyPass"))
		if err != nil {
			return nil, err
		}
		return newPrivateKey1(sk, notBefore, notAfter)
	case TypePublic:
		sk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		return newPrivateKey2(sk, notBefore, notAfter)
	}
	return nil, fmt.Errorf("%w: token type %v", ErrUnsupportedType, t)
}

func newPrivateKey1(sk *oprf.PrivateKey, notBefore, notAfter time.Time) (*PrivateKey, error) {
	enc, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(TypePrivate, enc)
	if err != nil {
		return nil, err
	}
	pub.NotBefore, pub.NotAfter = notBefore, notAfter
	return &PrivateKey{pub: pub, oprf: sk, server: oprf.NewVerifiableServer(oprf.SuiteP384, sk)}, nil
}

func newPrivateKey2(sk *rsa.PrivateKey, notBefore, notAfter time.Time) (*PrivateKey, error) {
	if sk.Size() != rsaNk {
		return nil, malformed("issuer key: not RSA-2048")
	}
	sk.Precompute()
	enc, err := marshalRSAPSSKey(&sk.PublicKey)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(TypePublic, enc)
	if err != nil {
		return nil, err
	}
	pub.NotBefore, pub.NotAfter = notBefore, notAfter
	signer, err := newRSASigner(sk)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{pub: pub, rsa: sk, signer: signer}, nil
}

// Public is the key's public half.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Issue answers a TokenRequest made for this key with a TokenResponse.
func (k *PrivateKey) Issue(req *TokenRequest) ([]byte, error) {
	if req.Type != k.pub.Type || req.TruncatedKeyID != k.pub.id[KeyIDLen-1] {
		return nil, malformed("token request: not for this key")
	}
	if len(req.BlindedMsg) != blindedLen(req.Type) {
		return nil, malformed("token request: blinded message size")
	}
	if k.pub.Type == TypePublic {
		return k.signer.sign(req.BlindedMsg)
	}
	e := group.P384.NewElement()
	if err := e.UnmarshalBinary(req.BlindedMsg); err != nil || e.IsIdentity() {
		return nil, malformed("token request: blinded element")
	}
	ev, err := k.server.Evaluate(&oprf.EvaluationRequest{Elements: []oprf.Blinded{e}})
	if err != nil {
		return nil, fmt.Errorf("%w token request: %w", ErrMalformed, err)
	}
	out, err := ev.Elements[0].MarshalBinaryCompress()
	if err != nil {
		return nil, err
	}
	proof, err := ev.Proof.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append(out, proof...), nil
}

// Verify checks tok's authenticator: by signature for type 2, by evaluating
// the VOPRF again for type 1 (RFC 9578 §5.4).
func (k *PrivateKey) Verify(tok *Token) error {
	if k.pub.Type == TypePublic {
		return k.pub.Verify(tok)
	}
	if tok.Type != k.pub.Type || tok.KeyID != k.pub.id {
		return fmt.Errorf("%w: not issued under this key", ErrInvalidToken)
	}
	out, err := k.server.FullEvaluate(tok.AuthenticatorInput())
	if err != nil || subtle.ConstantTimeCompare(out, tok.Authenticator) != 1 {
		return fmt.Errorf("%w: authenticator does not match", ErrInvalidToken)
	}
	return nil
}

// PEM block types of persisted keys; the Not-Before and Not-After headers
// hold NotBefore and NotAfter in Unix seconds.
const (
	pemType1 = "PRIVACYPASS VOPRF P384 PRIVATE KEY" // the 48-byte scalar
	pemType2 = "PRIVATE KEY"                        // PKCS #8 RSA
)

// MarshalPEM encodes k, with its NotBefore, for storage.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	b := &pem.Block{Headers: map[string]string{}}
	for name, t := range map[string]time.Time{"Not-Before": k.pub.NotBefore, "Not-After": k.pub.NotAfter} {
		if !t.IsZero() {
			b.Headers[name] = strconv.FormatInt(t.Unix(), 10)
		}
	}
	var err error
	if k.pub.Type == TypePublic {
		b.Type = pemType2
		b.Bytes, err = x509.MarshalPKCS8PrivateKey(k.rsa)
	} else {
		b.Type = pemType1
		b.Bytes, err = k.oprf.MarshalBinary()
	}
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(b), nil
}

// ParsePrivateKeyPEM decodes a key written by MarshalPEM. A PKCS #8 RSA key
// without headers is accepted too (as in RFC 9578's vectors).
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, malformed("issuer key: no PEM block")
	}
	var notBefore, notAfter time.Time
	for name, t := range map[string]*time.Time{"Not-Before": &notBefore, "Not-After": &notAfter} {
		if v, ok := b.Headers[name]; ok {
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, malformed("issuer key: " + name + " header")
			}
			*t = time.Unix(sec, 0)
		}
	}
	switch b.Type {
	case pemType1:
		sk := new(oprf.PrivateKey)
		if err := sk.UnmarshalBinary(oprf.SuiteP384, b.Bytes); err != nil {
			return nil, fmt.Errorf("%w issuer key: %w", ErrMalformed, err)
		}
		return newPrivateKey1(sk, notBefore, notAfter)
	case pemType2:
		key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w issuer key: %w", ErrMalformed, err)
		}
		sk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, malformed("issuer key: PKCS #8 key is not RSA")
		}
		return newPrivateKey2(sk, notBefore, notAfter)
	}
	return nil, malformed("issuer key: PEM block type " + strconv.Quote(b.Type))
}

// PendingToken is a client's token between its TokenRequest and the
// issuer's TokenResponse.
type PendingToken struct {
	// Request is the marshalled TokenRequest to send to the issuer.
	Request []byte

	token Token // all but the authenticator
	// type 1
	voprf    oprf.VerifiableClient
	finalize *oprf.FinalizeData
	// type 2
	brsa  blindrsa.Client
	state blindrsa.State
}

// NewPendingToken starts issuance of a token for the encoded TokenChallenge
// challenge under k. rnd supplies the nonce, then the blind (type 1: a
// P-384 scalar from 48 bytes; type 2: the PSS salt, then the blinding
// factor); nil means crypto/rand. Only tests pass anything else.
func (k *PublicKey) NewPendingToken(challenge []byte, rnd io.Reader) (*PendingToken, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	p := &PendingToken{token: Token{Type: k.Type, ChallengeDigest: sha256.Sum256(challenge), KeyID: k.id}}
	if _, err := io.ReadFull(rnd, p.token.Nonce[:]); err != nil {
		return nil, err
	}
	input := p.token.AuthenticatorInput()
	req := TokenRequest{Type: k.Type, TruncatedKeyID: k.id[KeyIDLen-1]}
	switch k.Type {
	case TypePrivate:
		blind, err := readScalar(rnd)
		if err != nil {
			return nil, err
		}
		p.voprf = oprf.NewVerifiableClient(oprf.SuiteP384, k.oprf)
		var ev *oprf.EvaluationRequest
		p.finalize, ev, err = p.voprf.DeterministicBlind([][]byte{input}, []oprf.Blind{blind})
		if err != nil {
			return nil, err
		}
		if req.BlindedMsg, err = ev.Elements[0].MarshalBinaryCompress(); err != nil {
			return nil, err
		}
	case TypePublic:
		var err error
		if p.brsa, err = blindrsa.NewClient(blindrsa.SHA384PSSDeterministic, k.rsa); err != nil {
			return nil, err
		}
		if req.BlindedMsg, p.state, err = p.brsa.Blind(rnd, input); err != nil {
			return nil, err
		}
	}
	var err error
	p.Request, err = req.MarshalBinary()
	return p, err
}

// readScalar draws a non-zero P-384 scalar from rnd by rejection sampling.
func readScalar(rnd io.Reader) (group.Scalar, error) {
	buf := make([]byte, p384Scalar)
	for {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, err
		}
		s := group.P384.NewScalar()
		if s.UnmarshalBinary(buf) == nil && !s.IsZero() {
			return s, nil
		}
	}
}

// Finalize unblinds the issuer's TokenResponse into a token, checking the
// issuer's proof (type 1) or signature (type 2).
func (p *PendingToken) Finalize(response []byte) (*Token, error) {
	if len(response) != responseLen(p.token.Type) {
		return nil, malformed("token response: wrong size")
	}
	tok := p.token
	switch tok.Type {
	case TypePrivate:
		e := group.P384.NewElement()
		if err := e.UnmarshalBinary(response[:p384Point]); err != nil {
			return nil, malformed("token response: evaluated element")
		}
		proof := new(dleq.Proof)
		if err := proof.UnmarshalBinary(group.P384, response[p384Point:]); err != nil {
			return nil, malformed("token response: proof")
		}
		out, err := p.voprf.Finalize(p.finalize, &oprf.Evaluation{Elements: []oprf.Evaluated{e}, Proof: proof})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		tok.Authenticator = out[0]
	case TypePublic:
		sig, err := p.brsa.Finalize(p.state, response)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		tok.Authenticator = sig
	}
	return &tok, nil
}
