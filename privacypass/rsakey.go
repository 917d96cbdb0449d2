package privacypass

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"math/big"

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

// blindSign is RSABSSA's BlindSign (RFC 9474 §4.3): the raw RSA private
// operation on the blinded message. circl's does it without the Chinese
// remainder theorem, four times slower; this one uses the key's precomputed
// CRT values, blinds the operation (so math/big's variable timing says
// nothing about the key), and checks the result against the public key
// (so a fault cannot leak a factor).
func blindSign(sk *rsa.PrivateKey, blinded []byte) ([]byte, error) {
	n := sk.N
	c := new(big.Int).SetBytes(blinded)
	if len(blinded) != sk.Size() || c.Cmp(n) >= 0 {
		return nil, malformed("token request: blinded message out of range")
	}
	e := big.NewInt(int64(sk.E))
	var r, rInv *big.Int
	for {
		var err error
		if r, err = rand.Int(rand.Reader, n); err != nil {
			return nil, err
		}
		if rInv = new(big.Int).ModInverse(r, n); rInv != nil {
			break
		}
	}
	cb := new(big.Int).Exp(r, e, n)
	cb.Mul(cb, c).Mod(cb, n)
	p, q, pc := sk.Primes[0], sk.Primes[1], sk.Precomputed
	m1 := new(big.Int).Exp(cb, pc.Dp, p)
	m2 := new(big.Int).Exp(cb, pc.Dq, q)
	m1.Sub(m1, m2).Mul(m1, pc.Qinv).Mod(m1, p) // h = qInv(m1 − m2) mod p
	m1.Mul(m1, q).Add(m1, m2)                  // m = m2 + h·q
	m1.Mul(m1, rInv).Mod(m1, n)                // unblind
	if new(big.Int).Exp(m1, e, n).Cmp(c) != 0 {
		return nil, errBlindSign
	}
	return m1.FillBytes(make([]byte, sk.Size())), nil
}
