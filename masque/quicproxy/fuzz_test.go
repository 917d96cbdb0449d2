package quicproxy_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/masqued/masqued/masque/quicproxy"
)

// fuzzType maps a fuzzed selector onto the eight capsule types and one type
// just past them, so the fuzzer spends its time on values, not on finding a
// type Parse knows.
func fuzzType(sel uint8) uint64 { return quicproxy.TypeRegisterClientCID + uint64(sel%9) }

func typeSelector(typ uint64) uint8 { return uint8(typ - quicproxy.TypeRegisterClientCID) }

// FuzzParse: Parse never panics; it fails with ErrMalformed on a known type
// and with an error that is not on an unknown one, returning a zero Capsule;
// what it accepts obeys the draft's bounds, aliases the input, and re-appends
// to a capsule whose value is the input itself, or, when the input spelled a
// length in a longer varint than needed, a shorter value that parses to the
// same capsule.
func FuzzParse(f *testing.F) {
	for _, tt := range capsuleCases {
		f.Add(typeSelector(tt.c.Type), tt.value)
	}
	for _, tt := range malformedCapsules {
		f.Add(typeSelector(tt.typ), tt.value)
	}
	f.Add(uint8(8), cid8)
	f.Fuzz(func(t *testing.T, sel uint8, value []byte) {
		typ := fuzzType(sel)
		c, err := quicproxy.Parse(typ, value)
		if err != nil {
			if errors.Is(err, quicproxy.ErrMalformed) != quicproxy.IsCapsuleType(typ) {
				t.Fatalf("Parse(%#x) error %v: ErrMalformed must be exactly the known types' error", typ, err)
			}
			if !capsuleEqual(c, quicproxy.Capsule{}) {
				t.Fatalf("Parse returned %s with error %v", fmtCapsule(c), err)
			}
			return
		}
		if c.Type != typ || len(c.CID) > quicproxy.MaxCIDLen || len(c.VCID) > quicproxy.MaxCIDLen ||
			len(c.ResetToken) != 0 && len(c.ResetToken) != 16 ||
			(typ == quicproxy.TypeMaxConnectionIDs) != (c.MaxSeq != 0) {
			t.Fatalf("Parse(%#x, %x) accepted %s", typ, value, fmtCapsule(c))
		}
		for _, fld := range [][]byte{c.CID, c.VCID, c.ResetToken} {
			if !aliases(fld, value) {
				t.Fatalf("field %x does not alias the input", fld)
			}
		}
		gotTyp, again := splitCapsule(t, c.Append(nil))
		if gotTyp != typ {
			t.Fatalf("re-appended as type %#x, want %#x", gotTyp, typ)
		}
		if bytes.Equal(again, value) {
			return
		}
		if len(again) >= len(value) {
			t.Fatalf("re-appended value %x differs from the input %x and is not shorter", again, value)
		}
		c2, err := quicproxy.Parse(typ, again)
		if err != nil || !capsuleEqual(c2, c) {
			t.Fatalf("re-appended value %x parses to %s, %v; want %s", again, fmtCapsule(c2), err, fmtCapsule(c))
		}
	})
}

// FuzzParseForwarding: ParseForwarding never panics and fails only with
// ErrMalformed; what it accepts serializes to a value that parses to the same
// Forwarding, and ParsePortSharing, which shares the parser but ignores the
// parameters, accepts it with the same boolean.
func FuzzParseForwarding(f *testing.F) {
	for _, tt := range forwardingCases {
		f.Add(tt.v)
	}
	for _, tt := range badForwarding {
		f.Add(tt.v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fw, err := quicproxy.ParseForwarding(v)
		if err != nil {
			if !errors.Is(err, quicproxy.ErrMalformed) {
				t.Fatalf("ParseForwarding(%q): %v is not ErrMalformed", v, err)
			}
			return
		}
		s := fw.String()
		again, err := quicproxy.ParseForwarding(s)
		if err != nil || !forwardingEqual(again, fw) {
			t.Fatalf("ParseForwarding(%q) = %+v; String() = %q parses to %+v, %v", v, fw, s, again, err)
		}
		if s2 := again.String(); s2 != s {
			t.Fatalf("String is not stable: %q, then %q", s, s2)
		}
		if shared, err := quicproxy.ParsePortSharing(v); err != nil || shared != fw.Enabled {
			t.Fatalf("ParsePortSharing(%q) = %v, %v; ParseForwarding said %v", v, shared, err, fw.Enabled)
		}
	})
}

// FuzzScramble: Scramble and Unscramble never panic, whatever the packet and
// cidLen; they refuse exactly the packets the draft cannot transform (too
// short, long header, cidLen outside 0..MaxCIDLen) and leave those unchanged;
// on the others Scramble agrees with referenceScramble, keeps the CID and the
// form bit 0, and Unscramble undoes it, as Scramble undoes Unscramble. A key
// that is not 32 bytes must be refused; the packet is then tried under the
// Appendix A key.
func FuzzScramble(f *testing.F) {
	f.Add(appendixAKey, appendixA.identity, 20)
	f.Add(appendixAKey, appendixA.scrambled, 20)
	f.Add(seq(32, 9), append([]byte{0x40}, seq(1349, 1)...), 8)
	f.Add(seq(32, 9), make([]byte, 1+8+16), 8)
	f.Add(seq(32, 9), make([]byte, 1+8+15), 8)
	f.Add(seq(31, 0), append([]byte{0xc3}, seq(60, 0)...), 4)
	f.Add(appendixAKey, seq(300, 0x7f)[1:], quicproxy.MaxCIDLen)
	f.Add(appendixAKey, seq(40, 0), -1)
	f.Fuzz(func(t *testing.T, key, pkt []byte, cidLen int) {
		s, err := quicproxy.NewScrambler(key)
		if (err == nil) != (len(key) == 32) {
			t.Fatalf("NewScrambler of a %d-byte key: %v", len(key), err)
		}
		if err != nil {
			key = appendixAKey
			if s, err = quicproxy.NewScrambler(key); err != nil {
				t.Fatal(err)
			}
		}
		valid := cidLen >= 0 && cidLen <= quicproxy.MaxCIDLen && len(pkt) >= 1+cidLen+16 && pkt[0]&0x80 == 0
		for _, op := range []struct {
			name      string
			do, undo  func([]byte, int) error
			reference bool
		}{
			{"Scramble", s.Scramble, s.Unscramble, true},
			{"Unscramble", s.Unscramble, s.Scramble, false},
		} {
			p := bytes.Clone(pkt)
			err := op.do(p, cidLen)
			if !valid {
				if !errors.Is(err, quicproxy.ErrMalformed) || !bytes.Equal(p, pkt) {
					t.Fatalf("%s(%x, %d) = %v, changed %v; want ErrMalformed and no change", op.name, pkt, cidLen, err, !bytes.Equal(p, pkt))
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s(%x, %d): %v", op.name, pkt, cidLen, err)
			}
			if len(p) != len(pkt) || p[0]&0x80 != 0 || !bytes.Equal(p[1:1+cidLen], pkt[1:1+cidLen]) {
				t.Fatalf("%s(%x, %d) = %x: length, form bit or CID changed", op.name, pkt, cidLen, p)
			}
			if op.reference {
				if want := referenceScramble(key, pkt, cidLen); !bytes.Equal(p, want) {
					t.Fatalf("Scramble(%x, %d) = %x, the reference gives %x", pkt, cidLen, p, want)
				}
			}
			if err := op.undo(p, cidLen); err != nil || !bytes.Equal(p, pkt) {
				t.Fatalf("undoing %s: %x, %v; want %x", op.name, p, err, pkt)
			}
		}
	})
}
