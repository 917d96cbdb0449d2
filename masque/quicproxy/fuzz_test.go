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
