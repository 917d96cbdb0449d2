package quicproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/masque/quicproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vi encodes v as a minimal varint.
func vi(v uint64) []byte { return quicvarint.Append(nil, v) }

// vi8 encodes v as an 8-byte varint, the longest form, which a peer may use
// for any value.
func vi8(v uint64) []byte { return quicvarint.AppendWithLen(nil, v, 8) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// lp is a length-prefixed field.
func lp(f []byte) []byte { return cat(vi(uint64(len(f))), f) }

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

var (
	cid8    = []byte("\x31\x32\x33\x34\x35\x36\x37\x38")
	cid20   = seq(20, 0xa0)
	cid255  = seq(255, 1)
	vcid4   = []byte("\x62\x64\x66\x68")
	token16 = seq(16, 0xe0)
)

// capsuleCases are well-formed capsules of every type, with the value bytes
// the draft's layout gives each.
var capsuleCases = []struct {
	name  string
	c     quicproxy.Capsule
	value []byte
}{
	{"REGISTER_CLIENT_CID", quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: cid8}, cid8},
	{"REGISTER_CLIENT_CID empty", quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID}, nil},
	{"REGISTER_CLIENT_CID 255 bytes", quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: cid255}, cid255},
	{"REGISTER_TARGET_CID", quicproxy.Capsule{Type: quicproxy.TypeRegisterTargetCID, CID: cid20, ResetToken: token16},
		cat(lp(cid20), lp(token16))},
	{"REGISTER_TARGET_CID no token", quicproxy.Capsule{Type: quicproxy.TypeRegisterTargetCID, CID: cid8},
		cat(lp(cid8), vi(0))},
	{"REGISTER_TARGET_CID 255 bytes", quicproxy.Capsule{Type: quicproxy.TypeRegisterTargetCID, CID: cid255, ResetToken: token16},
		cat(lp(cid255), lp(token16))},
	{"ACK_CLIENT_CID", quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid8, VCID: vcid4},
		cat(lp(cid8), lp(vcid4))},
	{"ACK_CLIENT_CID no VCID", quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid8},
		cat(lp(cid8), vi(0))},
	{"ACK_CLIENT_VCID", quicproxy.Capsule{Type: quicproxy.TypeAckClientVCID, CID: cid8, VCID: vcid4, ResetToken: token16},
		cat(lp(cid8), lp(vcid4), lp(token16))},
	{"ACK_CLIENT_VCID no token", quicproxy.Capsule{Type: quicproxy.TypeAckClientVCID, CID: cid8, VCID: cid20},
		cat(lp(cid8), lp(cid20), vi(0))},
	{"ACK_TARGET_CID", quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: vcid4, VCID: cid255, ResetToken: token16},
		cat(lp(vcid4), lp(cid255), lp(token16))},
	{"ACK_TARGET_CID all empty", quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID},
		cat(vi(0), vi(0), vi(0))},
	{"CLOSE_CLIENT_CID", quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: cid20}, cid20},
	{"CLOSE_TARGET_CID", quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID, CID: vcid4}, vcid4},
	{"CLOSE_TARGET_CID empty", quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID}, nil},
	{"MAX_CONNECTION_IDS 1", quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 1}, vi(1)},
	{"MAX_CONNECTION_IDS 3", quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 3}, vi(3)},
	{"MAX_CONNECTION_IDS max varint", quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: quicvarint.Max},
		vi(quicvarint.Max)},
}

// aliases reports whether f, when not empty, lies inside b's memory.
func aliases(f, b []byte) bool {
	if len(f) == 0 {
		return true
	}
	for i := range b {
		if &b[i] == &f[0] {
			return len(b)-i >= len(f)
		}
	}
	return false
}

func capsuleEqual(a, b quicproxy.Capsule) bool {
	return a.Type == b.Type && a.MaxSeq == b.MaxSeq && bytes.Equal(a.CID, b.CID) &&
		bytes.Equal(a.VCID, b.VCID) && bytes.Equal(a.ResetToken, b.ResetToken)
}

func fmtCapsule(c quicproxy.Capsule) string {
	return fmt.Sprintf("{Type %#x CID %x VCID %x ResetToken %x MaxSeq %d}", c.Type, c.CID, c.VCID, c.ResetToken, c.MaxSeq)
}

// splitCapsule parses the Type and Length that Append wrote and returns the
// value, failing unless Length covers exactly the rest.
func splitCapsule(t *testing.T, b []byte) (uint64, []byte) {
	t.Helper()
	typ, n, err := quicvarint.Parse(b)
	if err != nil {
		t.Fatalf("type of %x: %v", b, err)
	}
	length, m, err := quicvarint.Parse(b[n:])
	if err != nil {
		t.Fatalf("length of %x: %v", b, err)
	}
	value := b[n+m:]
	if length != uint64(len(value)) {
		t.Fatalf("Length %d, but %d value bytes follow", length, len(value))
	}
	return typ, value
}

func TestCapsuleRoundTrip(t *testing.T) {
	for _, tt := range capsuleCases {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b := tt.c.Append(bytes.Clone(prefix))
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Append overwrote what b held: %x", b)
			}
			typ, value := splitCapsule(t, b[len(prefix):])
			if typ != tt.c.Type {
				t.Fatalf("Type %#x, want %#x", typ, tt.c.Type)
			}
			if !bytes.Equal(value, tt.value) {
				t.Fatalf("value\n %x\nwant\n %x", value, tt.value)
			}
			got, err := quicproxy.Parse(typ, value)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !capsuleEqual(got, tt.c) {
				t.Fatalf("Parse = %s, want %s", fmtCapsule(got), fmtCapsule(tt.c))
			}
			for _, f := range [][]byte{got.CID, got.VCID, got.ResetToken} {
				if !aliases(f, value) {
					t.Errorf("field %x is a copy; Parse should alias value", f)
				}
			}
		})
	}
}

// TestParseLongVarints: a peer may encode every length in the 8-byte form;
// Parse reads the same capsule.
func TestParseLongVarints(t *testing.T) {
	value := cat(vi8(uint64(len(cid8))), cid8, vi8(uint64(len(vcid4))), vcid4, vi8(16), token16)
	got, err := quicproxy.Parse(quicproxy.TypeAckTargetCID, value)
	want := quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: cid8, VCID: vcid4, ResetToken: token16}
	if err != nil || !capsuleEqual(got, want) {
		t.Fatalf("Parse = %s, %v; want %s", fmtCapsule(got), err, fmtCapsule(want))
	}
	got, err = quicproxy.Parse(quicproxy.TypeMaxConnectionIDs, vi8(7))
	if err != nil || got.MaxSeq != 7 {
		t.Fatalf("MAX_CONNECTION_IDS as 8-byte varint: %s, %v", fmtCapsule(got), err)
	}
}

var (
	cid256  = seq(256, 0)
	token17 = seq(17, 0)
)

// malformedCapsules are values Parse must refuse with ErrMalformed.
var malformedCapsules = []struct {
	name  string
	typ   uint64
	value []byte
}{
	{"REGISTER_CLIENT_CID of 256 bytes", quicproxy.TypeRegisterClientCID, cid256},
	{"CLOSE_CLIENT_CID of 256 bytes", quicproxy.TypeCloseClientCID, cid256},
	{"CLOSE_TARGET_CID of 256 bytes", quicproxy.TypeCloseTargetCID, cid256},
	{"REGISTER_TARGET_CID empty", quicproxy.TypeRegisterTargetCID, nil},
	{"REGISTER_TARGET_CID no token length", quicproxy.TypeRegisterTargetCID, lp(cid8)},
	{"REGISTER_TARGET_CID CID length overruns", quicproxy.TypeRegisterTargetCID, cat(vi(9), cid8)},
	{"REGISTER_TARGET_CID CID of 256 bytes", quicproxy.TypeRegisterTargetCID, cat(lp(cid256), vi(0))},
	{"REGISTER_TARGET_CID token length overruns", quicproxy.TypeRegisterTargetCID, cat(lp(cid8), vi(16), token16[:15])},
	{"REGISTER_TARGET_CID 17-byte token", quicproxy.TypeRegisterTargetCID, cat(lp(cid8), lp(token17))},
	{"REGISTER_TARGET_CID 8-byte token", quicproxy.TypeRegisterTargetCID, cat(lp(cid8), lp(token16[:8]))},
	{"REGISTER_TARGET_CID trailing byte", quicproxy.TypeRegisterTargetCID, cat(lp(cid8), lp(token16), []byte{0})},
	{"REGISTER_TARGET_CID truncated 2-byte length", quicproxy.TypeRegisterTargetCID, []byte{0x40}},
	{"REGISTER_TARGET_CID huge length", quicproxy.TypeRegisterTargetCID, cat(vi8(quicvarint.Max), cid8)},
	{"ACK_CLIENT_CID empty", quicproxy.TypeAckClientCID, nil},
	{"ACK_CLIENT_CID no VCID length", quicproxy.TypeAckClientCID, lp(cid8)},
	{"ACK_CLIENT_CID VCID overruns", quicproxy.TypeAckClientCID, cat(lp(cid8), vi(5), vcid4)},
	{"ACK_CLIENT_CID VCID of 256 bytes", quicproxy.TypeAckClientCID, cat(lp(cid8), lp(cid256))},
	{"ACK_CLIENT_CID trailing token", quicproxy.TypeAckClientCID, cat(lp(cid8), lp(vcid4), vi(0))},
	{"ACK_CLIENT_VCID no token length", quicproxy.TypeAckClientVCID, cat(lp(cid8), lp(vcid4))},
	{"ACK_CLIENT_VCID 17-byte token", quicproxy.TypeAckClientVCID, cat(lp(cid8), lp(vcid4), lp(token17))},
	{"ACK_CLIENT_VCID 1-byte token", quicproxy.TypeAckClientVCID, cat(lp(cid8), lp(vcid4), lp(token16[:1]))},
	{"ACK_CLIENT_VCID trailing bytes", quicproxy.TypeAckClientVCID, cat(lp(cid8), lp(vcid4), lp(token16), cid8)},
	{"ACK_TARGET_CID CID of 256 bytes", quicproxy.TypeAckTargetCID, cat(lp(cid256), lp(vcid4), vi(0))},
	{"ACK_TARGET_CID token overruns", quicproxy.TypeAckTargetCID, cat(lp(cid8), lp(vcid4), vi(16))},
	{"MAX_CONNECTION_IDS 0", quicproxy.TypeMaxConnectionIDs, vi(0)},
	{"MAX_CONNECTION_IDS 0 as 8-byte varint", quicproxy.TypeMaxConnectionIDs, vi8(0)},
	{"MAX_CONNECTION_IDS empty", quicproxy.TypeMaxConnectionIDs, nil},
	{"MAX_CONNECTION_IDS truncated varint", quicproxy.TypeMaxConnectionIDs, vi8(5)[:4]},
	{"MAX_CONNECTION_IDS trailing byte", quicproxy.TypeMaxConnectionIDs, cat(vi(2), []byte{0})},
}

func TestParseMalformed(t *testing.T) {
	for _, tt := range malformedCapsules {
		t.Run(tt.name, func(t *testing.T) {
			c, err := quicproxy.Parse(tt.typ, tt.value)
			if !errors.Is(err, quicproxy.ErrMalformed) {
				t.Fatalf("Parse = %s, %v; want ErrMalformed", fmtCapsule(c), err)
			}
			if !capsuleEqual(c, quicproxy.Capsule{}) {
				t.Fatalf("Parse returned %s with its error", fmtCapsule(c))
			}
		})
	}
}

func TestParseUnknownType(t *testing.T) {
	for _, typ := range []uint64{0, quicproxy.TypeRegisterClientCID - 1, quicproxy.TypeMaxConnectionIDs + 1} {
		if quicproxy.IsCapsuleType(typ) {
			t.Errorf("IsCapsuleType(%#x) = true", typ)
		}
		_, err := quicproxy.Parse(typ, cid8)
		if err == nil || errors.Is(err, quicproxy.ErrMalformed) {
			t.Errorf("Parse(%#x) error = %v, want an error that is not ErrMalformed", typ, err)
		}
	}
	for _, tt := range capsuleCases {
		if !quicproxy.IsCapsuleType(tt.c.Type) {
			t.Errorf("IsCapsuleType(%#x) = false", tt.c.Type)
		}
	}
}

// TestAppendUnknownType: a type Parse does not know is written with an empty
// value, so a stream stays framed.
func TestAppendUnknownType(t *testing.T) {
	c := quicproxy.Capsule{Type: 0x17, CID: cid8, MaxSeq: 9}
	typ, value := splitCapsule(t, c.Append(nil))
	if typ != 0x17 || len(value) != 0 {
		t.Fatalf("Append = type %#x, value %x; want 0x17 and empty", typ, value)
	}
}

// TestCapsuleNoAllocs: parsing and appending into a buffer with room do not
// allocate, so a flood of capsules costs the reader no garbage.
func TestCapsuleNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, tt := range capsuleCases {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := quicproxy.Parse(tt.c.Type, tt.value); err != nil {
				t.Fatal(err)
			}
			_ = tt.c.Append(buf[:0])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Parse+Append, want 0", tt.name, allocs)
		}
	}
	bad := cat(lp(cid8), vi(16))
	if allocs := testing.AllocsPerRun(100, func() { _, _ = quicproxy.Parse(quicproxy.TypeAckTargetCID, bad) }); allocs != 0 {
		t.Errorf("%v allocs per refused capsule, want 0", allocs)
	}
}
