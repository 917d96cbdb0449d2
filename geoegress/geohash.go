package geoegress

import "github.com/masqued/masqued/geoegress/geohint"

// geohashText is a geohash (see package geohint) of at most 12 characters, stored in place so that
// cells are comparable values that need no allocation. Unused bytes are zero.
type geohashText [geohint.MaxLen]byte

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
		g[i] = geohint.Alphabet[v]
	}
	return g
}

// geohashFrom copies the first n characters of s, lower-cased, into a
// geohashText. s must be valid.
func geohashFrom(s string, n int) geohashText {
	var g geohashText
	for i := 0; i < n && i < len(s); i++ {
		g[i] = s[i] | 0x20 // lower case: a geohash's digits have that bit already
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
	return geohint.MaxLen
}

// prefix returns the first n characters of g.
func (g geohashText) prefix(n int) geohashText {
	for i := n; i < geohint.MaxLen; i++ {
		g[i] = 0
	}
	return g
}

func (g geohashText) String() string { return string(g[:g.len()]) }
