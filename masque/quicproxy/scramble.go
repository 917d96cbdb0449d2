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
// 1252- and 1350-byte packets: NewCTR 0.35-0.53 µs/op with that allocation;
// the CTR here, eight independent cipher.Block.Encrypt calls in flight (see
// xorKeyStream), 0.92 and 0.99 µs/op (about 1.36 GB/s) and 0 allocs, where
// one block at a time, each waiting on the last, took 1.64 and 1.77 µs. A
// sync.Pool buffer for the keystream was tried before and was no faster.
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
// No buffer of its own: a Scrambler's would not be safe for concurrent use,
// and one on the stack escapes to the heap through the cipher.Block call.
// The first keystream block (the header byte's and the next 15) and a short
// tail are computed in the packet's IV field, which holds the IV again on
// return. The whole blocks between are computed in place: each block's
// plaintext is set aside in registers, its counter written over it and
// encrypted there, and the plaintext XORed back. Eight blocks at a time
// have no encryption waiting on another's result, so the CPU keeps them in
// flight together.
func (s *Scrambler) xorKeyStream(pkt []byte, cidLen int) {
	ks := pkt[1+cidLen : 1+cidLen+ivLen : 1+cidLen+ivLen]
	ivHi, ivLo := binary.BigEndian.Uint64(ks[:8]), binary.BigEndian.Uint64(ks[8:])
	body := pkt[1+cidLen+ivLen:]

	s.k1.Encrypt(ks, ks)
	pkt[0] ^= ks[0] // the first keystream byte is the header byte's
	n := min(len(body), ivLen-1)
	for i := range n {
		body[i] ^= ks[1+i]
	}
	body = body[n:]
	hi, lo := add128(ivHi, ivLo)

	const inFlight = 8
	var plain [2 * inFlight]uint64
	for len(body) >= ivLen {
		blocks := min(inFlight, len(body)/ivLen)
		for j := range blocks {
			b := body[j*ivLen : (j+1)*ivLen]
			plain[2*j], plain[2*j+1] = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
			binary.BigEndian.PutUint64(b, hi)
			binary.BigEndian.PutUint64(b[8:], lo)
			hi, lo = add128(hi, lo)
		}
		for j := range blocks {
			b := body[j*ivLen : (j+1)*ivLen]
			s.k1.Encrypt(b, b)
		}
		for j := range blocks {
			b := body[j*ivLen : (j+1)*ivLen]
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^plain[2*j])
			binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])^plain[2*j+1])
		}
		body = body[blocks*ivLen:]
	}

	if len(body) > 0 { // the tail, shorter than a block
		binary.BigEndian.PutUint64(ks[:8], hi)
		binary.BigEndian.PutUint64(ks[8:], lo)
		s.k1.Encrypt(ks, ks)
		for i := range body {
			body[i] ^= ks[i]
		}
	}
	binary.BigEndian.PutUint64(ks[:8], ivHi)
	binary.BigEndian.PutUint64(ks[8:], ivLo)
}

// add128 returns the 128-bit counter hi:lo plus one.
func add128(hi, lo uint64) (uint64, uint64) {
	lo, c := bits.Add64(lo, 1, 0)
	return hi + c, lo
}
