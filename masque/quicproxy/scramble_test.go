package quicproxy_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"testing"

	"github.com/masqued/masqued/masque/quicproxy"
)

// appendixA is the draft's Appendix A example: a short-header packet, the VCID
// that replaces its 20-byte Destination Connection ID, the packet with the
// identity transform, and with the scramble transform under appendixAKey.
var appendixA = struct {
	packet, cid, vcid, identity, scrambled []byte
}{
	packet:    unhex("50002e9184cb0022ca7aecf1128c91d809e1b6853f1ba3bed7043a21632023048def32f4f8f260c290490413d24ea6"),
	cid:       unhex("002e9184cb0022ca7aecf1128c91d809e1b6853f"),
	vcid:      unhex("0123456789abcdef0123456789abcdef01234567"),
	identity:  unhex("500123456789abcdef0123456789abcdef012345671ba3bed7043a21632023048def32f4f8f260c290490413d24ea6"),
	scrambled: unhex("320123456789abcdef0123456789abcdef012345678ebe6906e16ec5fc90a02c0109994c3fed03f9d5d88c5f408bb6"),
}

func TestScrambleAppendixA(t *testing.T) {
	v := appendixA
	pkt := bytes.Clone(v.packet)
	if !bytes.Equal(pkt[1:1+len(v.cid)], v.cid) {
		t.Fatalf("the vector's packet does not carry its CID")
	}
	copy(pkt[1:], v.vcid) // same length: the packet keeps its size
	if !bytes.Equal(pkt, v.identity) {
		t.Fatalf("VCID in place:\n %x\nwant the identity transform's\n %x", pkt, v.identity)
	}
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Scramble(pkt, len(v.vcid)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt, v.scrambled) {
		t.Fatalf("Scramble:\n %x\nwant\n %x", pkt, v.scrambled)
	}
	if err := s.Unscramble(pkt, len(v.vcid)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt, v.identity) {
		t.Fatalf("Unscramble:\n %x\nwant\n %x", pkt, v.identity)
	}
}

// referenceScramble is the draft's procedure written out with crypto/cipher's
// own CTR, step by step, allocating freely: an independent implementation to
// check the Scrambler against.
func referenceScramble(key, packet []byte, l int) []byte {
	k1, _ := aes.NewCipher(key[:16])
	k2, _ := aes.NewCipher(key[16:32])
	cid := packet[1 : l+1]
	iv := packet[l+1 : l+17]
	ctrInput := append([]byte{packet[0]}, packet[l+17:]...)
	ctrOutput := make([]byte, len(ctrInput))
	cipher.NewCTR(k1, iv).XORKeyStream(ctrOutput, ctrInput)
	header := ctrOutput[0] & 0x7f
	encryptedIV := make([]byte, 16)
	k2.Encrypt(encryptedIV, iv)
	out := append([]byte{header}, cid...)
	out = append(out, encryptedIV...)
	return append(out, ctrOutput[1:]...)
}

// TestScrambleReference compares the Scrambler with referenceScramble at every
// packet length around the keystream's block boundaries, for several CID
// lengths, with IVs whose counters carry across 64 bits and wrap at 128.
func TestScrambleReference(t *testing.T) {
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		t.Fatal(err)
	}
	ivs := [][]byte{
		seq(16, 0x10),
		unhex("0000000000000000fffffffffffffffe"), // the low limb carries into the high one
		unhex("ffffffffffffffffffffffffffffffff"), // the counter wraps to zero
	}
	for _, cidLen := range []int{0, 1, 8, 20, quicproxy.MaxCIDLen} {
		for _, iv := range ivs {
			for bodyLen := range 100 {
				pkt := append(append(append([]byte{0x4b}, seq(cidLen, 0x80)...), iv...), seq(bodyLen, 3)...)
				want := referenceScramble(appendixAKey, pkt, cidLen)
				orig := bytes.Clone(pkt)
				if err := s.Scramble(pkt, cidLen); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(pkt, want) {
					t.Fatalf("cidLen %d, iv %x, %d body bytes:\n %x\nwant\n %x", cidLen, iv, bodyLen, pkt, want)
				}
				if err := s.Unscramble(pkt, cidLen); err != nil || !bytes.Equal(pkt, orig) {
					t.Fatalf("cidLen %d, iv %x, %d body bytes: Unscramble = %x, %v; want %x", cidLen, iv, bodyLen, pkt, err, orig)
				}
			}
		}
	}
}

func TestScrambleRefuses(t *testing.T) {
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		pkt    []byte
		cidLen int
	}{
		{"empty", nil, 0},
		{"one byte short", make([]byte, 1+8+15), 8},
		{"no room for the IV after the CID", make([]byte, 20), 20},
		{"long header", append([]byte{0xc0}, make([]byte, 40)...), 8},
		{"negative cidLen", make([]byte, 40), -1},
		{"cidLen above MaxCIDLen", make([]byte, 400), quicproxy.MaxCIDLen + 1},
	}
	for _, tt := range tests {
		for _, op := range []struct {
			name string
			f    func([]byte, int) error
		}{{"Scramble", s.Scramble}, {"Unscramble", s.Unscramble}} {
			pkt := bytes.Clone(tt.pkt)
			if err := op.f(pkt, tt.cidLen); !errors.Is(err, quicproxy.ErrMalformed) {
				t.Errorf("%s: %s = %v, want ErrMalformed", tt.name, op.name, err)
			}
			if !bytes.Equal(pkt, tt.pkt) {
				t.Errorf("%s: %s changed the packet it refused", tt.name, op.name)
			}
		}
	}
	if err := s.Scramble(make([]byte, 1+8+16), 8); err != nil {
		t.Errorf("the shortest packet: %v", err)
	}
}

func TestNewScramblerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if s, err := quicproxy.NewScrambler(make([]byte, n)); err == nil || s != nil {
			t.Errorf("NewScrambler of a %d-byte key = %v, %v; want an error", n, s, err)
		}
	}
}

// TestScrambleNoAllocs: the transform runs once per forwarded packet.
func TestScrambleNoAllocs(t *testing.T) {
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 1350)
	allocs := testing.AllocsPerRun(100, func() {
		if s.Scramble(pkt, 8) != nil || s.Unscramble(pkt, 8) != nil {
			t.Fatal("refused")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per Scramble+Unscramble, want 0", allocs)
	}
}

// TestScrambleConcurrent: one Scrambler serves many goroutines (run with
// -race); each still gets the reference result.
func TestScrambleConcurrent(t *testing.T) {
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			pkt := append([]byte{0x40}, seq(1300, byte(g))...)
			want := referenceScramble(appendixAKey, pkt, 8)
			for range 200 {
				p := bytes.Clone(pkt)
				if err := s.Scramble(p, 8); err != nil || !bytes.Equal(p, want) {
					errs <- fmt.Errorf("goroutine %d: wrong result (%v)", g, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkScramble: one transform per packet, in place, at the sizes of a
// QUIC v1 packet in a 1280-byte-MTU tunnel and a typical forwarded one.
func BenchmarkScramble(b *testing.B) {
	s, err := quicproxy.NewScrambler(appendixAKey)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1252, 1350} {
		pkt := append([]byte{0x40}, seq(size-1, 0)...)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Scramble(pkt, 8); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprint(size, "/unscramble"), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Unscramble(pkt, 8); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
