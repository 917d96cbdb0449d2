package geoegress

// Geohash (geohash.org, public domain): a location as base-32 text whose
// prefixes are the cells that contain it, which is what makes a prefix a
// coarse cell that many clients share.

const (
	geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"
	maxGeohash      = 12 // about 3.7 cm × 1.9 cm; longer adds nothing
)

// geohashValue maps a byte to its 5-bit value, or 0xff for bytes outside the
// alphabet. Upper-case letters are accepted as their lower-case forms.
var geohashValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(geohashAlphabet); i++ {
		c := geohashAlphabet[i]
		t[c] = byte(i)
		if c >= 'a' && c <= 'z' {
			t[c-'a'+'A'] = byte(i)
		}
	}
	return t
}()

// validGeohash reports whether s is a geohash of 1 to 12 characters.
func validGeohash(s string) bool {
	if len(s) == 0 || len(s) > maxGeohash {
		return false
	}
	for i := 0; i < len(s); i++ {
		if geohashValue[s[i]] == 0xff {
			return false
		}
	}
	return true
}

// geohashText is a geohash of at most 12 characters, stored in place so that
// cells are comparable values that need no allocation. Unused bytes are zero.
type geohashText [maxGeohash]byte

// encodeGeohash returns the geohash of (lat, lon) with n characters
// (1 ≤ n ≤ 12). Coordinates out of range are clamped.
func encodeGeohash(lat, lon float64, n int) geohashText {
	var g geohashText
	latLo, latHi := -90.0, 90.0
	lonLo, lonHi := -180.0, 180.0
	lat = min(max(lat, latLo), latHi)
	lon = min(max(lon, lonLo), lonHi)
	even := true // bits alternate longitude, latitude, starting with longitude
	for i := range n {
		var v byte
		for range 5 {
			v <<= 1
			if even {
				if mid := (lonLo + lonHi) / 2; lon >= mid {
					v |= 1
					lonLo = mid
				} else {
					lonHi = mid
				}
			} else {
				if mid := (latLo + latHi) / 2; lat >= mid {
					v |= 1
					latLo = mid
				} else {
					latHi = mid
				}
			}
			even = !even
		}
		g[i] = geohashAlphabet[v]
	}
	return g
}

// geohashFrom copies the first n characters of s, lower-cased, into a
// geohashText. s must be valid.
func geohashFrom(s string, n int) geohashText {
	var g geohashText
	for i := 0; i < n && i < len(s); i++ {
		g[i] = geohashAlphabet[geohashValue[s[i]]]
	}
	return g
}

// len returns the number of characters in g.
func (g *geohashText) len() int {
	for i, c := range g {
		if c == 0 {
			return i
		}
	}
	return maxGeohash
}

// prefix returns the first n characters of g.
func (g geohashText) prefix(n int) geohashText {
	for i := n; i < maxGeohash; i++ {
		g[i] = 0
	}
	return g
}

func (g geohashText) String() string { return string(g[:g.len()]) }
