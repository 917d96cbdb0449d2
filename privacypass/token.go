// Package privacypass lets masqued serve only users who hold an account
// without learning who they are: Privacy Pass (RFC 9576 architecture, RFC 9577
// HTTP authentication scheme, RFC 9578 issuance protocols).
//
// An attester checks a client's account and relays its blinded token request
// to an issuer, which signs it without seeing the account; the proxy checks
// the unblinded token in Proxy-Authorization without seeing either. This
// package has what every party shares: the wire structures of both issuance
// protocols (type 0x0001, VOPRF P-384/SHA-384, and type 0x0002, blind RSA
// 2048), keys, the header scheme and the issuer directory; and the client's
// side, its token pool (Client). The issuer, the attester and the proxy's
// redemption live in privacypass/ppserver, so that a client links none of
// the servers' stores and metrics. The cryptography is cloudflare/circl's;
// the token layer is ours.
//
// Nothing here logs a token, a nonce, an API key or an account id.
package privacypass

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// TokenType is a Privacy Pass token type (RFC 9578 §8.1).
type TokenType uint16

const (
	TypePrivate TokenType = 0x0001 // VOPRF(P-384, SHA-384), privately verifiable
	TypePublic  TokenType = 0x0002 // Blind RSA (2048), publicly verifiable
)

func (t TokenType) String() string {
	switch t {
	case TypePrivate:
		return "0x0001 (VOPRF P-384)"
	case TypePublic:
		return "0x0002 (blind RSA 2048)"
	}
	return fmt.Sprintf("0x%04x", uint16(t))
}

// Sizes of the fixed-size fields, by RFC 9578 §5 and §6.
const (
	NonceLen   = 32
	KeyIDLen   = 32 // Nid: SHA-256 of the token key's encoding
	digestLen  = 32
	p384Point  = 49  // Ne: compressed P-384 element
	p384Scalar = 48  // Ns
	voprfNk    = 48  // Nk of type 1: the SHA-384 VOPRF output
	rsaNk      = 256 // Nk of type 2: the RSA-2048 modulus length
)

// authenticatorLen is Nk for t, or 0 for a type this package does not know.
func authenticatorLen(t TokenType) int {
	switch t {
	case TypePrivate:
		return voprfNk
	case TypePublic:
		return rsaNk
	}
	return 0
}

// blindedLen is the length of TokenRequest.blinded_msg for t.
func blindedLen(t TokenType) int {
	switch t {
	case TypePrivate:
		return p384Point
	case TypePublic:
		return rsaNk
	}
	return 0
}

// responseLen is the length of a TokenResponse for t.
func responseLen(t TokenType) int {
	switch t {
	case TypePrivate:
		return p384Point + 2*p384Scalar // evaluate_msg, evaluate_proof
	case TypePublic:
		return rsaNk // blind_sig
	}
	return 0
}

// ErrMalformed is wrapped by every error about bytes that do not parse.
var ErrMalformed = errors.New("privacypass: malformed")

func malformed(what string) error { return fmt.Errorf("%w %s", ErrMalformed, what) }

// TokenChallenge is the default challenge structure (RFC 9577 §2.1.1).
type TokenChallenge struct {
	Type              TokenType
	IssuerName        string
	RedemptionContext []byte // empty or 32 bytes
	OriginInfo        string // "" or comma-separated origin names
}

// MarshalBinary encodes c.
func (c *TokenChallenge) MarshalBinary() ([]byte, error) {
	if len(c.IssuerName) == 0 {
		return nil, malformed("challenge: empty issuer name")
	}
	if n := len(c.RedemptionContext); n != 0 && n != 32 {
		return nil, malformed("challenge: redemption context must be empty or 32 bytes")
	}
	var b cryptobyte.Builder
	b.AddUint16(uint16(c.Type))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.IssuerName)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.RedemptionContext) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.OriginInfo)) })
	return b.Bytes()
}

// UnmarshalBinary decodes the whole of data into c.
func (c *TokenChallenge) UnmarshalBinary(data []byte) error {
	s := cryptobyte.String(data)
	var t uint16
	var issuer, ctx, origin cryptobyte.String
	if !s.ReadUint16(&t) || !s.ReadUint16LengthPrefixed(&issuer) || !s.ReadUint8LengthPrefixed(&ctx) ||
		!s.ReadUint16LengthPrefixed(&origin) || !s.Empty() {
		return malformed("token challenge")
	}
	if len(issuer) == 0 {
		return malformed("challenge: empty issuer name")
	}
	if len(ctx) != 0 && len(ctx) != 32 {
		return malformed("challenge: redemption context must be empty or 32 bytes")
	}
	*c = TokenChallenge{Type: TokenType(t), IssuerName: string(issuer), OriginInfo: string(origin)}
	if len(ctx) > 0 {
		c.RedemptionContext = append([]byte(nil), ctx...)
	}
	return nil
}

// Token is the default token structure (RFC 9577 §2.2).
type Token struct {
	Type            TokenType
	Nonce           [NonceLen]byte
	ChallengeDigest [digestLen]byte
	KeyID           [KeyIDLen]byte
	Authenticator   []byte // Nk bytes for Type
}

// authenticatorInputLen is the length of token_type‖nonce‖challenge_digest‖token_key_id.
const authenticatorInputLen = 2 + NonceLen + digestLen + KeyIDLen

// AuthenticatorInput is what the authenticator authenticates: the token
// without its authenticator (RFC 9577 §2.2.2).
func (t *Token) AuthenticatorInput() []byte {
	b := make([]byte, 0, authenticatorInputLen+len(t.Authenticator))
	b = binary.BigEndian.AppendUint16(b, uint16(t.Type))
	b = append(b, t.Nonce[:]...)
	b = append(b, t.ChallengeDigest[:]...)
	return append(b, t.KeyID[:]...)
}

// MarshalBinary encodes t.
func (t *Token) MarshalBinary() ([]byte, error) {
	if n := authenticatorLen(t.Type); n == 0 || len(t.Authenticator) != n {
		return nil, malformed("token: authenticator length does not match the type")
	}
	return append(t.AuthenticatorInput(), t.Authenticator...), nil
}

// UnmarshalBinary decodes data into t. Only the token types of RFC 9578 are
// understood, since the authenticator's length depends on the type.
func (t *Token) UnmarshalBinary(data []byte) error {
	if len(data) < 2 {
		return malformed("token: too short")
	}
	typ := TokenType(binary.BigEndian.Uint16(data))
	n := authenticatorLen(typ)
	if n == 0 {
		return fmt.Errorf("%w: token type %v", ErrUnsupportedType, typ)
	}
	if len(data) != authenticatorInputLen+n {
		return malformed(fmt.Sprintf("token: %d bytes, want %d for type %v", len(data), authenticatorInputLen+n, typ))
	}
	t.Type = typ
	p := data[2:]
	p = p[copy(t.Nonce[:], p):]
	p = p[copy(t.ChallengeDigest[:], p):]
	p = p[copy(t.KeyID[:], p):]
	t.Authenticator = append(t.Authenticator[:0], p...)
	return nil
}

// ErrUnsupportedType is wrapped by errors about token types other than 1 and 2.
var ErrUnsupportedType = errors.New("privacypass: unsupported token type")

// TokenRequest is the issuance request of both RFC 9578 protocols (§5.1, §6.1).
type TokenRequest struct {
	Type           TokenType
	TruncatedKeyID uint8 // the last byte of token_key_id
	BlindedMsg     []byte
}

// MarshalBinary encodes r.
func (r *TokenRequest) MarshalBinary() ([]byte, error) {
	if n := blindedLen(r.Type); n == 0 || len(r.BlindedMsg) != n {
		return nil, malformed("token request: blinded message length does not match the type")
	}
	b := make([]byte, 0, 3+len(r.BlindedMsg))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Type))
	b = append(b, r.TruncatedKeyID)
	return append(b, r.BlindedMsg...), nil
}

// UnmarshalBinary decodes data into r. An unknown type wraps
// ErrUnsupportedType; a wrong length wraps ErrMalformed.
func (r *TokenRequest) UnmarshalBinary(data []byte) error {
	if len(data) < 3 {
		return malformed("token request: too short")
	}
	typ := TokenType(binary.BigEndian.Uint16(data))
	n := blindedLen(typ)
	if n == 0 {
		return fmt.Errorf("%w: token type %v", ErrUnsupportedType, typ)
	}
	if len(data) != 3+n {
		return malformed(fmt.Sprintf("token request: %d bytes, want %d for type %v", len(data), 3+n, typ))
	}
	*r = TokenRequest{Type: typ, TruncatedKeyID: data[2], BlindedMsg: append([]byte(nil), data[3:]...)}
	return nil
}

// keyID is token_key_id: SHA-256 of the token key's encoding (RFC 9578 §5.5, §6.5).
func keyID(tokenKey []byte) [KeyIDLen]byte { return sha256.Sum256(tokenKey) }
