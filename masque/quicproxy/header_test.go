package quicproxy_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/masqued/masqued/masque/quicproxy"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// appendixAKey is the scramble key of the draft's Appendix A.
var appendixAKey = unhex("f13a915f96fb8919d9d8655488ffea5778cac8cffbc27cd38c173bcbad955cff")

// appendixAKeyB64 is appendixAKey in padded base64.
const appendixAKeyB64 = "8TqRX5b7iRnZ2GVUiP/qV3jKyM/7wnzTjBc7y62VXP8="

func forwardingEqual(a, b quicproxy.Forwarding) bool {
	return a.Enabled == b.Enabled && slices.Equal(a.AcceptTransforms, b.AcceptTransforms) &&
		a.Transform == b.Transform && bytes.Equal(a.ScrambleKey, b.ScrambleKey)
}

// forwardingCases are values ParseForwarding accepts.
var forwardingCases = []struct {
	name string
	v    string
	want quicproxy.Forwarding
}{
	{"the draft's client example", `?1; accept-transform="scramble-dt,identity"; scramble-key=:` + appendixAKeyB64 + `:`,
		quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{"scramble-dt", "identity"}, ScrambleKey: appendixAKey}},
	{"the draft's proxy example", `?1; transform="scramble-dt"; scramble-key=:` + appendixAKeyB64 + `:`,
		quicproxy.Forwarding{Enabled: true, Transform: "scramble-dt", ScrambleKey: appendixAKey}},
	{"serialized form, no spaces", `?1;accept-transform="identity"`,
		quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{"identity"}}},
	{"?0", `?0`, quicproxy.Forwarding{}},
	{"?0 with parameters", `?0;accept-transform="identity"`,
		quicproxy.Forwarding{AcceptTransforms: []string{"identity"}}},
	{"?1 without accept-transform", `?1`, quicproxy.Forwarding{Enabled: true}},
	{"leading and trailing spaces", `   ?1;transform="identity"  `,
		quicproxy.Forwarding{Enabled: true, Transform: "identity"}},
	{"spaces after the semicolon", `?1;   transform="identity"`,
		quicproxy.Forwarding{Enabled: true, Transform: "identity"}},
	{"unpadded key", `?1;scramble-key=:` + appendixAKeyB64[:43] + `:`,
		quicproxy.Forwarding{Enabled: true, ScrambleKey: appendixAKey}},
	{"names trimmed, empty names dropped", `?1;accept-transform=" scramble-dt , ,identity,"`,
		quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{"scramble-dt", "identity"}}},
	{"empty accept-transform", `?1;accept-transform=""`, quicproxy.Forwarding{Enabled: true}},
	{"sf-string escapes", `?1;transform="a\"b\\c"`, quicproxy.Forwarding{Enabled: true, Transform: `a"b\c`}},
	{"unknown parameters of every type ignored",
		`?1;int=-12;dec=123456789012.123;tok=*a/b:c;str="x";bin=:AAAA:;flag;*s.t_a-r=?0;accept-transform="identity"`,
		quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{"identity"}}},
	{"duplicate parameter: the last wins", `?1;transform="identity";transform="scramble-dt"`,
		quicproxy.Forwarding{Enabled: true, Transform: "scramble-dt"}},
	{"duplicate parameter: an earlier bad type is overwritten", `?1;transform=1;transform="identity"`,
		quicproxy.Forwarding{Enabled: true, Transform: "identity"}},
}

// badForwarding are values ParseForwarding refuses with ErrMalformed.
var badForwarding = []struct{ name, v string }{
	{"empty", ``},
	{"only spaces", `   `},
	{"integer item", `1`},
	{"string item", `"identity"`},
	{"token item", `identity`},
	{"byte sequence item", `:AAAA:`},
	{"decimal item", `1.5`},
	{"inner list", `(?1)`},
	{"list of booleans", `?1, ?0`},
	{"?2", `?2`},
	{"? alone", `?`},
	{"?true", `?true`},
	{"leading tab", "\t?1"},
	{"trailing tab", "?1\t"},
	{"space before a semicolon", `?1 ;transform="identity"`},
	{"space before =", `?1;transform ="identity"`},
	{"space after =", `?1;transform= "identity"`},
	{"trailing comma", `?1;transform="identity",`},
	{"uppercase key", `?1;Transform="identity"`},
	{"key starting with a digit", `?1;1x=1`},
	{"key with a bad character", `?1;trans!form=1`},
	{"empty key", `?1;=1`},
	{"missing value", `?1;transform=`},
	{"bad base64 character", `?1;scramble-key=:!!!!:`},
	{"padding inside base64", `?1;scramble-key=:AA==AAAA:`},
	{"partial padding", `?1;scramble-key=:AAA=A:`},
	{"one base64 character", `?1;scramble-key=:A:`},
	{"byte sequence without closing colon", `?1;scramble-key=:` + appendixAKeyB64},
	{"short key", `?1;scramble-key=:AAAA:`},
	{"33-byte key", `?1;scramble-key=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g:`},
	{"empty key value", `?1;scramble-key=::`},
	{"key as a string", `?1;scramble-key="` + appendixAKeyB64 + `"`},
	{"accept-transform as a token", `?1;accept-transform=identity`},
	{"accept-transform as a boolean", `?1;accept-transform`},
	{"transform as a byte sequence", `?1;transform=:AAAA:`},
	{"duplicate parameter: the last has a bad type", `?1;transform="identity";transform=1`},
	{"bad escape", `?1;transform="a\x"`},
	{"escape at the end", `?1;transform="a\`},
	{"unterminated string", `?1;transform="identity`},
	{"non-ASCII in a string", `?1;transform="idéntity"`},
	{"tab in a string", "?1;transform=\"a\tb\""},
	{"integer of 16 digits", `?1;n=1234567890123456`},
	{"decimal of 4 fraction digits", `?1;n=1.2345`},
	{"decimal without fraction", `?1;n=1.`},
	{"13 digits before the point", `?1;n=1234567890123.5`},
	{"lone minus", `?1;n=-`},
	{"minus before a letter", `?1;n=-a`},
	{"unknown parameter with a bad item", `?1;x=@1;transform="identity"`},
}

func TestParseForwarding(t *testing.T) {
	for _, tt := range forwardingCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := quicproxy.ParseForwarding(tt.v)
			if err != nil {
				t.Fatalf("ParseForwarding(%q): %v", tt.v, err)
			}
			if !forwardingEqual(got, tt.want) {
				t.Fatalf("ParseForwarding(%q) = %+v, want %+v", tt.v, got, tt.want)
			}
			again, err := quicproxy.ParseForwarding(got.String())
			if err != nil || !forwardingEqual(again, got) {
				t.Fatalf("String() = %q parses to %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseForwardingMalformed(t *testing.T) {
	for _, tt := range badForwarding {
		t.Run(tt.name, func(t *testing.T) {
			got, err := quicproxy.ParseForwarding(tt.v)
			if !errors.Is(err, quicproxy.ErrMalformed) {
				t.Fatalf("ParseForwarding(%q) = %+v, %v; want ErrMalformed", tt.v, got, err)
			}
			if !forwardingEqual(got, quicproxy.Forwarding{}) {
				t.Fatalf("ParseForwarding returned %+v with its error", got)
			}
		})
	}
}

func TestForwardingString(t *testing.T) {
	tests := []struct {
		f    quicproxy.Forwarding
		want string
	}{
		{quicproxy.Forwarding{}, `?0`},
		{quicproxy.Forwarding{Enabled: true}, `?1`},
		{quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformScramble, quicproxy.TransformIdentity},
			ScrambleKey: appendixAKey},
			`?1;accept-transform="scramble-dt,identity";scramble-key=:` + appendixAKeyB64 + `:`},
		{quicproxy.Forwarding{Enabled: true, ScrambleKey: appendixAKey, Transform: quicproxy.TransformScramble,
			AcceptTransforms: []string{"identity"}},
			`?1;accept-transform="identity";transform="scramble-dt";scramble-key=:` + appendixAKeyB64 + `:`},
		{quicproxy.Forwarding{Transform: `a"b\c`}, `?0;transform="a\"b\\c"`},
		{quicproxy.Forwarding{Transform: "idéntity\n"}, `?0;transform="id?ntity?"`},
		{quicproxy.Forwarding{AcceptTransforms: []string{}}, `?0`},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestParsePortSharing(t *testing.T) {
	tests := []struct {
		v    string
		want bool
		ok   bool
	}{
		{`?1`, true, true},
		{`?0`, false, true},
		{` ?1 `, true, true},
		{`?1;future=1;x`, true, true},
		{`?0;a="b"`, false, true},
		{``, false, false},
		{`1`, false, false},
		{`?1 ?0`, false, false},
		{`?1;Future=1`, false, false},
		{`?1;x="`, false, false},
		{"?1\t", false, false},
	}
	for _, tt := range tests {
		got, err := quicproxy.ParsePortSharing(tt.v)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("ParsePortSharing(%q) = %v, %v; want %v", tt.v, got, err, tt.want)
		}
		if !tt.ok && (!errors.Is(err, quicproxy.ErrMalformed) || got) {
			t.Errorf("ParsePortSharing(%q) = %v, %v; want ErrMalformed", tt.v, got, err)
		}
	}
}
