package privacypass

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"

	"filippo.io/bigmod"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// rsaPSSAlgorithm is the DER AlgorithmIdentifier a type-2 token key carries
// (RFC 9578 §6.5): id-RSASSA-PSS with RSASSA-PSS-params {sha384, mgf1 with
// sha384, saltLength 48}. crypto/x509 refuses RSASSA-PSS keys, so the SPKI
// is built and taken apart here; the parameters are fixed, so they are
// compared as bytes.
var rsaPSSAlgorithm = []byte{
	0x30, 0x3d, // SEQUENCE
	0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, // id-RSASSA-PSS
	0x30, 0x30, // RSASSA-PSS-params
	0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, // [0] sha384
	0xa1, 0x1a, 0x30, 0x18, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, // [1] mgf1
	0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, //     with sha384
	0xa2, 0x03, 0x02, 0x01, 0x30, // [2] saltLength 48
}

// marshalRSAPSSKey encodes pk as the SubjectPublicKeyInfo of a type-2 token key.
func marshalRSAPSSKey(pk *rsa.PublicKey) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(rsaPSSAlgorithm)
		b.AddASN1BitString(x509.MarshalPKCS1PublicKey(pk))
	})
	return b.Bytes()
}

// parseRSAPSSKey decodes a type-2 token key, which must be an RSA-2048
// RSASSA-PSS SubjectPublicKeyInfo with the parameters of RFC 9578 §6.5.
func parseRSAPSSKey(der []byte) (*rsa.PublicKey, error) {
	s := cryptobyte.String(der)
	var spki, alg cryptobyte.String
	var bits encasn1.BitString
	if !s.ReadASN1(&spki, asn1.SEQUENCE) || !s.Empty() ||
		!spki.ReadASN1Element(&alg, asn1.SEQUENCE) || !spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return nil, malformed("token key: not a SubjectPublicKeyInfo")
	}
	if !bytes.Equal(alg, rsaPSSAlgorithm) {
		return nil, malformed("token key: not RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt")
	}
	if bits.BitLength%8 != 0 {
		return nil, malformed("token key: bit string")
	}
	pk, err := x509.ParsePKCS1PublicKey(bits.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w token key: %w", ErrMalformed, err)
	}
	if pk.Size() != rsaNk {
		return nil, malformed("token key: not a 2048-bit modulus")
	}
	return pk, nil
}

var errBlindSign = errors.New("privacypass: blind signature failed its check")

// rsaSigner is RSABSSA's BlindSign (RFC 9474 §4.3), the raw RSA private
// operation on a blinded message, in constant time with the Chinese
// remainder theorem: the way crypto/rsa decrypts, on filippo.io/bigmod
// (crypto/rsa's own arithmetic, re-exported). circl's BlindSign uses
// math/big without CRT, which is slower (BenchmarkBlindSign compares the
// two). The result is checked
// against the public key so that a fault cannot leak a factor.
type rsaSigner struct {
	n, p, q *bigmod.Modulus
	dP, dQ  []byte
	qInv    *bigmod.Nat // mod p
	e       uint
	size    int
}

func newRSASigner(sk *rsa.PrivateKey) (*rsaSigner, error) {
	if len(sk.Primes) != 2 || sk.Precomputed.Dp == nil {
		return nil, malformed("issuer key: not a two-prime RSA key")
	}
	s := &rsaSigner{e: uint(sk.E), size: sk.Size(), dP: sk.Precomputed.Dp.Bytes(), dQ: sk.Precomputed.Dq.Bytes()}
	var err error
	if s.n, err = bigmod.NewModulus(sk.N.Bytes()); err != nil {
		return nil, err
	}
	if s.p, err = bigmod.NewModulus(sk.Primes[0].Bytes()); err != nil {
		return nil, err
	}
	if s.q, err = bigmod.NewModulus(sk.Primes[1].Bytes()); err != nil {
		return nil, err
	}
	if s.qInv, err = bigmod.NewNat().SetBytes(sk.Precomputed.Qinv.Bytes(), s.p); err != nil {
		return nil, err
	}
	return s, nil
}

// sign returns blinded^d mod n.
func (s *rsaSigner) sign(blinded []byte) ([]byte, error) {
	if len(blinded) != s.size {
		return nil, malformed("token request: blinded message size")
	}
	c, err := bigmod.NewNat().SetBytes(blinded, s.n)
	if err != nil {
		return nil, malformed("token request: blinded message out of range")
	}
	t := bigmod.NewNat()
	m := bigmod.NewNat().Exp(t.Mod(c, s.p), s.dP, s.p)  // c^dP mod p
	m2 := bigmod.NewNat().Exp(t.Mod(c, s.q), s.dQ, s.q) // c^dQ mod q
	m.Sub(t.Mod(m2, s.p), s.p)                          // − m2 mod p
	m.Mul(s.qInv, s.p)                                  // · qInv mod p
	m.ExpandFor(s.n).Mul(s.q.Nat(), s.n)                // · q mod n
	m.Add(m2.ExpandFor(s.n), s.n)                       // + m2 mod n
	if bigmod.NewNat().ExpShortVarTime(m, s.e, s.n).Equal(c) != 1 {
		return nil, errBlindSign
	}
	return m.Bytes(s.n), nil
}
