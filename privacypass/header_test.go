package privacypass

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestRFC9577Headers parses the WWW-Authenticate values of RFC 9577
// Appendix A.1, which carry unknown parameters, quoted max-age and two
// challenges in one value.
func TestRFC9577Headers(t *testing.T) {
	for i, v := range rfc9577Headers {
		got := ParseChallenges([]string{v.header})
		if len(got) != len(v.challenges) {
			t.Fatalf("vector %d: %d challenges, want %d", i, len(got), len(v.challenges))
		}
		for j, want := range v.challenges {
			c := got[j]
			if uint16(c.TokenChallenge.Type) != want.tokenType || hex.EncodeToString(c.Raw) != want.challenge ||
				hex.EncodeToString(c.TokenKey) != want.tokenKey || c.MaxAge != want.maxAge {
				t.Errorf("vector %d challenge %d: got %v", i, j, c.String())
			}
			again := ParseChallenges([]string{c.String()})
			if len(again) != 1 || !bytes.Equal(again[0].Raw, c.Raw) || !bytes.Equal(again[0].TokenKey, c.TokenKey) || again[0].MaxAge != c.MaxAge {
				t.Errorf("vector %d challenge %d: format/parse round trip changed it", i, j)
			}
		}
	}
}

func TestParseChallengesForms(t *testing.T) {
	tc := TokenChallenge{Type: TypePublic, IssuerName: "issuer.example", OriginInfo: "proxy.example"}
	raw, err := tc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{1, 2, 3, 4}
	padded := base64.URLEncoding.EncodeToString(raw)
	bare := base64.RawURLEncoding.EncodeToString(raw)
	if padded == bare {
		t.Fatal("test challenge needs padding")
	}
	grease := TokenChallenge{Type: 0x0a0a, IssuerName: "issuer.example"}
	greaseRaw, _ := grease.MarshalBinary()
	for name, tt := range map[string]struct {
		values []string
		want   int // challenges found, each equal to raw
	}{
		"quoted padded":        {[]string{`PrivateToken challenge="` + padded + `", token-key="AQIDBA=="`}, 1},
		"bare unpadded":        {[]string{`PrivateToken challenge=` + bare + `, token-key=AQIDBA`}, 1},
		"bare padded":          {[]string{`PrivateToken challenge=` + padded + `,token-key=AQIDBA==`}, 1},
		"case and spaces":      {[]string{`privatetoken   Challenge = "` + padded + `" ,TOKEN-KEY="AQIDBA"`}, 1},
		"unknown parameters":   {[]string{`PrivateToken realm="x\"y", challenge="` + padded + `", token-key=AQIDBA, foo=bar`}, 1},
		"other schemes around": {[]string{`Basic realm="a, b", Bearer abc==, PrivateToken challenge="` + padded + `", token-key=AQIDBA, Negotiate`}, 1},
		"two values":           {[]string{`Basic realm=x`, `PrivateToken challenge=` + bare + `, token-key=AQIDBA`}, 1},
		"two challenges":       {[]string{`PrivateToken challenge=` + bare + `, token-key=AQIDBA, PrivateToken challenge="` + padded + `", token-key=AQIDBA`}, 2},
		"no challenge":         {[]string{`PrivateToken token-key=AQIDBA`}, 0},
		"bad base64":           {[]string{`PrivateToken challenge="!!!", token-key=AQIDBA`}, 0},
		"bad structure":        {[]string{`PrivateToken challenge=AAIA, token-key=AQIDBA`}, 0},
		"repeated parameter":   {[]string{`PrivateToken challenge=` + bare + `, challenge=` + bare + `, token-key=AQIDBA`}, 0},
		"unterminated quote":   {[]string{`PrivateToken challenge="` + padded}, 0},
		"negative max-age":     {[]string{`PrivateToken challenge=` + bare + `, token-key=AQIDBA, max-age=-1`}, 0},
	} {
		got := ParseChallenges(tt.values)
		if len(got) != tt.want {
			t.Errorf("%s: %d challenges, want %d", name, len(got), tt.want)
			continue
		}
		for _, c := range got {
			if !bytes.Equal(c.Raw, raw) || !bytes.Equal(c.TokenKey, key) || c.MaxAge != -1 {
				t.Errorf("%s: got %s", name, c.String())
			}
		}
	}
	// A greased token type parses; choosing a supported type is the client's job.
	got := ParseChallenges([]string{`PrivateToken challenge=` + base64.URLEncoding.EncodeToString(greaseRaw)})
	if len(got) != 1 || got[0].TokenChallenge.Type != 0x0a0a || got[0].TokenKey != nil {
		t.Errorf("greased challenge: %+v", got)
	}
}

func TestCredentials(t *testing.T) {
	tok := unhex(t, rfc9578Type2[0].token)
	for _, v := range []string{
		FormatCredentials(tok),
		`PrivateToken token=` + base64.RawURLEncoding.EncodeToString(tok),
		`privatetoken foo="bar", token="` + base64.RawURLEncoding.EncodeToString(tok) + `"`,
	} {
		got, err := ParseCredentials(v)
		if err != nil || !bytes.Equal(got, tok) {
			t.Errorf("%.40s…: %v", v, err)
		}
	}
	if _, err := ParseCredentials(`Basic dXNlcjpwYXNz`); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("Basic: %v", err)
	}
	for _, v := range []string{`PrivateToken`, `PrivateToken token=`, `PrivateToken token="*"`, `PrivateToken token="abc`} {
		if _, err := ParseCredentials(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// FuzzParseChallenges checks that parsing never panics and that every
// challenge found survives formatting and parsing again.
func FuzzParseChallenges(f *testing.F) {
	for _, v := range rfc9577Headers {
		f.Add(v.header)
	}
	f.Add(`Basic realm="a, b", Bearer abc==, PrivateToken challenge=AAIADmlzc3Vlci5leGFtcGxlAAAA, token-key=AQ`)
	f.Add(`PrivateToken challenge="\"`)
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range ParseChallenges([]string{v}) {
			again := ParseChallenges([]string{c.String()})
			if len(again) != 1 || !bytes.Equal(again[0].Raw, c.Raw) || !bytes.Equal(again[0].TokenKey, c.TokenKey) || again[0].MaxAge != c.MaxAge {
				t.Fatalf("round trip of %q changed it", c.String())
			}
			if strings.ContainsAny(c.String(), "\r\n") {
				t.Fatal("formatted challenge holds a line break")
			}
		}
	})
}

// FuzzParseCredentials checks that parsing never panics and that a token
// found is presented again unchanged.
func FuzzParseCredentials(f *testing.F) {
	f.Add(FormatCredentials(unhex(f, rfc9578Type2[0].token)))
	f.Add(`PrivateToken token=AAE, x="\\"`)
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := ParseCredentials(v)
		if err != nil {
			return
		}
		again, err := ParseCredentials(FormatCredentials(tok))
		if err != nil || !bytes.Equal(again, tok) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzUnmarshal feeds the same bytes to the three structures a peer sends
// and checks that whatever parses encodes back to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range rfc9578Type2 {
		f.Add(unhex(f, v.token))
		f.Add(unhex(f, v.challenge))
		f.Add(unhex(f, v.request))
	}
	for _, v := range rfc9578Type1 {
		f.Add(unhex(f, v.token))
		f.Add(unhex(f, v.request))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tok Token
		if tok.UnmarshalBinary(b) == nil {
			if enc, err := tok.MarshalBinary(); err != nil || !bytes.Equal(enc, b) {
				t.Fatalf("token round trip: %v", err)
			}
		}
		var c TokenChallenge
		if c.UnmarshalBinary(b) == nil {
			if enc, err := c.MarshalBinary(); err != nil || !bytes.Equal(enc, b) {
				t.Fatalf("challenge round trip: %v", err)
			}
		}
		var r TokenRequest
		if r.UnmarshalBinary(b) == nil {
			if enc, err := r.MarshalBinary(); err != nil || !bytes.Equal(enc, b) {
				t.Fatalf("request round trip: %v", err)
			}
		}
	})
}
