package geoegress

import (
	"errors"
	"strings"
)

// HintHeader is the client hint with the client's own idea of where it is:
// a geohash and, optionally, a country.
const HintHeader = "Sec-CH-Geohash"

// Hint is a parsed Sec-CH-Geohash value.
type Hint struct {
	Geohash string // lower case, 1 to 12 characters
	Country string // upper case ISO 3166-1 alpha-2, or "" when not given
}

var errHint = errors.New("Sec-CH-Geohash is not a geohash, optionally followed by -CC")

// ParseHint parses a Sec-CH-Geohash field value: the bare form
// u4pruyd-GB, or the draft's Structured Field string "u4pruyd" (and
// "u4pruyd-GB"). Surrounding whitespace is ignored.
func ParseHint(v string) (Hint, error) {
	v = strings.Trim(v, " \t")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	gh, cc, hasCC := strings.Cut(v, "-")
	if !validGeohash(gh) {
		return Hint{}, errHint
	}
	h := Hint{Geohash: strings.ToLower(gh)}
	if hasCC {
		h.Country = strings.ToUpper(cc)
		if !isAlpha(h.Country, 2) {
			return Hint{}, errHint
		}
	}
	return h, nil
}
