package quicproxy

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ivLen is the length of the scramble transform's IV: the 16 bytes after the
// connection ID, which QUIC v1's header protection sample makes distinct per
// packet (draft §The scramble transform).
const ivLen = aes.BlockSize

var (
	errShortPacket = fmt.Errorf("%w packet: shorter than 1 + connection ID + %d bytes", ErrMalformed, ivLen)
	errLongHeader  = fmt.Errorf("%w packet: header form bit set; only short headers are forwarded", ErrMalformed)
	errCIDLen      = fmt.Errorf("%w packet: connection ID length outside 0..%d", ErrMalformed, MaxCIDLen)
	errKeyLen      = errors.New("quicproxy: a scramble key is 32 bytes")
)

// Scrambler applies the scramble transform (draft §The scramble transform)
// with one side's 32-byte key: AES-128 with k1 = key[:16] in CTR mode over
// packet[0] | packet[L+17:], iv = packet[L+1:L+17] encrypted with AES-ECB under
// k2 = key[16:32], header byte & 0x7F. It re-encrypts a forwarded packet so
// that a passive observer cannot match the bytes that enter the proxy with
// those that leave it, while the connection ID stays readable for routing.
//
// It works in place with no allocation per packet. crypto/cipher.NewCTR cannot
// be used per packet: it copies the expanded key into a new stream every call
// (1 alloc, 512 B). Measured on the 2-core AMD EPYC development machine (Go
// 1.26, AES-NI) with BenchmarkScramble and the same loop around NewCTR,
// 1252- and 1350-byte packets: NewCTR 0.35-0.44 and 0.40-0.53 µs/op with that
// allocation; the CTR here, one
// cipher.Block.Encrypt per 16 bytes, 1.67-1.73 and 1.85-1.89 µs/op (about
// 730 MB/s) and 0 allocs. Generating eight keystream blocks at a time into a
// sync.Pool buffer was no faster (1.72-1.99 µs against 1.72-1.94 for 1350
// bytes, side by side), so there is no pool. The gap to NewCTR is its assembly
// keeping eight blocks in flight, which calls through cipher.Block cannot.
//
// A Scrambler is safe for concurrent use: it keeps no per-packet state in the
// struct (the keystream is computed in the packet's own IV field).
type Scrambler struct {
	k1 cipher.Block // AES-CTR over the header byte and the payload
	k2 cipher.Block // AES-ECB over the IV
}

// NewScrambler returns the Scrambler for key, which must be 32 bytes.
func NewScrambler(key []byte) (*Scrambler, error) {
	if len(key) != scrambleKeyLen {
		return nil, errKeyLen
	}
	k1, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, err
	}
	k2, err := aes.NewCipher(key[16:])
	if err != nil {
		return nil, err
	}
	return &Scrambler{k1: k1, k2: k2}, nil
}

// Scramble transforms the short-header packet pkt, whose Destination
// Connection ID is cidLen bytes, in place. It returns an error, leaving pkt
// unchanged, if pkt is shorter than 1+cidLen+16, its header form bit is set, or
// cidLen is outside 0..MaxCIDLen.
func (s *Scrambler) Scramble(pkt []byte, cidLen int) error {
	if err := checkPacket(pkt, cidLen); err != nil {
		return err
	}
	s.xorKeyStream(pkt, cidLen)
	pkt[0] &= 0x7f
	iv := pkt[1+cidLen : 1+cidLen+ivLen]
	s.k2.Encrypt(iv, iv)
	return nil
}

// Unscramble inverts Scramble in place, with the same checks (the form bit of
// a scrambled packet is always 0, so a packet with it set was not scrambled).
func (s *Scrambler) Unscramble(pkt []byte, cidLen int) error {
	if err := checkPacket(pkt, cidLen); err != nil {
		return err
	}
	iv := pkt[1+cidLen : 1+cidLen+ivLen]
	s.k2.Decrypt(iv, iv)
	s.xorKeyStream(pkt, cidLen)
	pkt[0] &= 0x7f
	return nil
}

func checkPacket(pkt []byte, cidLen int) error {
	switch {
	case cidLen < 0 || cidLen > MaxCIDLen:
		return errCIDLen
	case len(pkt) < 1+cidLen+ivLen:
		return errShortPacket
	case pkt[0]&0x80 != 0:
		return errLongHeader
	}
	return nil
}

// xorKeyStream XORs AES-CTR(k1, iv) over pkt[0] | pkt[cidLen+17:], iv being
// the plain IV in pkt[cidLen+1:cidLen+17], taken as a 128-bit big-endian
// counter incremented over the full block width (SP 800-38A B.1) as the draft
// says.
//
// Each keystream block is computed in the packet's IV field, which holds the
// IV again on return: a buffer of the Scrambler's own would not be safe for
// concurrent use, and one on the stack escapes to the heap through the
// cipher.Block interface call.
func (s *Scrambler) xorKeyStream(pkt []byte, cidLen int) {
	ks := pkt[1+cidLen : 1+cidLen+ivLen : 1+cidLen+ivLen]
	ivHi, ivLo := binary.BigEndian.Uint64(ks[:8]), binary.BigEndian.Uint64(ks[8:])
	hi, lo := ivHi, ivLo
	body := pkt[1+cidLen+ivLen:]
	for first := true; first || len(body) > 0; first = false {
		binary.BigEndian.PutUint64(ks[:8], hi)
		binary.BigEndian.PutUint64(ks[8:], lo)
		s.k1.Encrypt(ks, ks)
		var c uint64
		lo, c = bits.Add64(lo, 1, 0)
		hi += c
		k := ks
		if first {
			pkt[0] ^= k[0] // the first keystream byte is the header byte's
			k = k[1:]
		}
		if len(body) >= ivLen && len(k) == ivLen { // a whole block, as two words

			binary.LittleEndian.PutUint64(body, binary.LittleEndian.Uint64(body)^binary.LittleEndian.Uint64(k))
			binary.LittleEndian.PutUint64(body[8:], binary.LittleEndian.Uint64(body[8:])^binary.LittleEndian.Uint64(k[8:]))
			body = body[ivLen:]
			continue
		}
		n := min(len(body), len(k)) // the first block's 15 bytes, or the tail
		for i := range n {
			body[i] ^= k[i]
		}
		body = body[n:]
	}
	binary.BigEndian.PutUint64(ks[:8], ivHi)
	binary.BigEndian.PutUint64(ks[8:], ivLo)
}
