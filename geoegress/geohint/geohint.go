// Package geohint reads the Sec-CH-Geohash client hint, a client's own idea of
// where it is, which a proxy may use to choose its egress (see geoegress). It
// is apart from geoegress so that clients can check a hint before sending it
// without importing the proxy's side.
package geohint

import (
	"errors"
	"strings"
)

// Header is the client hint with the client's own idea of where it is: a
// geohash and, optionally, a country.
const Header = "Sec-CH-Geohash"

// Geohash (geohash.org, public domain): a location as base-32 text whose
// prefixes are the cells that contain it, which is what makes a prefix a
// coarse cell that many clients share.
const (
	Alphabet = "0123456789bcdefghjkmnpqrstuvwxyz" // a geohash's characters, by value
	MaxLen   = 12                                 // about 3.7 cm × 1.9 cm; longer adds nothing
)

// Hint is a parsed Sec-CH-Geohash value.
type Hint struct {
	Geohash string // lower case, 1 to 12 characters
	Country string // upper case ISO 3166-1 alpha-2, or "" when not given
}

var errHint = errors.New("Sec-CH-Geohash is not a geohash, optionally followed by -CC")

// Parse parses a Sec-CH-Geohash field value: the bare form
// u4pruyd-GB, or the draft's Structured Field string "u4pruyd" (and
// "u4pruyd-GB"). Surrounding whitespace is ignored.
func Parse(v string) (Hint, error) {
	v = strings.Trim(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	gh, cc, hasCC := strings.Cut(v, "-")
	if !Valid(gh) {
		return Hint{}, errHint
	}
	h := Hint{Geohash: strings.ToLower(gh)}
	if hasCC {
		h.Country = strings.ToUpper(cc)
		if !IsCountry(h.Country) {
			return Hint{}, errHint
		}
	}
	return h, nil
}

// Valid reports whether s is a geohash of 1 to MaxLen characters, in either
// case.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isChar[s[i]] {
			return false
		}
	}
	return true
}

// isChar holds the bytes of Alphabet and their upper-case forms.
var isChar = func() (t [256]bool) {
	for i := 0; i < len(Alphabet); i++ {
		c := Alphabet[i]
		t[c] = true
		if c >= 'a' && c <= 'z' {
			t[c-'a'+'A'] = true
		}
	}
	return t
}()

// IsCountry reports whether s has the form of an ISO 3166-1 alpha-2 code:
// two upper-case letters.
func IsCountry(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}
