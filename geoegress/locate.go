package geoegress

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/masqued/masqued/geoegress/geohint"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Locator finds a client's cell from its address in a MaxMind-format
// database (GeoIP2/GeoLite2 City or Country, or any database with their
// country, subdivisions and location fields). It keeps no client address.
// A Locator is safe for concurrent use.
type Locator struct {
	db *maxminddb.Reader
}

// OpenLocator opens the database at path. Close it when done.
func OpenLocator(path string) (*Locator, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the geolocation database: %w", err)
	}
	if err := db.Verify(); err != nil {
		db.Close()
		return nil, fmt.Errorf("verifying the geolocation database %s: %w", path, err)
	}
	return &Locator{db: db}, nil
}

// Close releases the database.
func (l *Locator) Close() error { return l.db.Close() }

// geoRecord is the part of a GeoIP2 City record that makes a cell.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// Cell returns the cell of addr with a geohash of precision characters, and
// the zero Cell for an address the database does not place.
func (l *Locator) Cell(addr netip.Addr, precision int) (Cell, error) {
	var rec geoRecord
	if err := l.db.Lookup(addr.Unmap()).Decode(&rec); err != nil {
		return Cell{}, fmt.Errorf("looking up the client: %w", err)
	}
	region := ""
	if len(rec.Subdivisions) > 0 {
		region = rec.Country.ISOCode + "-" + rec.Subdivisions[0].ISOCode
	}
	gh := ""
	if loc := rec.Location; loc.Latitude != nil && loc.Longitude != nil {
		gh = encodeGeohash(*loc.Latitude, *loc.Longitude, precision).String()
	}
	return NewCell(rec.Country.ISOCode, region, gh), nil
}

// Details for a Sec-CH-Geohash hint that did not count.
const (
	hintMalformed = geohint.Header + " ignored: malformed"
	hintElsewhere = geohint.Header + " ignored: outside the country of the client's address"
	hintUnplaced  = geohint.Header + " ignored: the client's address has no known country"
	hintNoCountry = geohint.Header + " ignored: from a relay, without a country, in no single country of the egress pools"
)

// locate returns the cell of the client of r: from its address, refined by
// its Sec-CH-Geohash hint if the hint lies in the same country. detail says
// why a hint was ignored. l may be nil (no database: the unknown cell).
//
// A request from a trusted relay (an ingress relay of a two-hop chain, whose
// address says nothing of where its clients are) is placed by its hint alone:
// the hint's country, or the one country the feed places its geohash in.
func (s *Selector) locate(l *Locator, trusted []netip.Prefix, r *http.Request) (c Cell, detail string) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	relayed := err == nil && containsAddr(trusted, peer.Addr())
	if l != nil && err == nil && !relayed {
		c, _ = l.Cell(peer.Addr(), s.precision) // unplaced: the unknown cell
	}
	vs := r.Header.Values(geohint.Header)
	if len(vs) == 0 {
		return c, ""
	}
	h, err := geohint.Parse(vs[0])
	if err != nil || len(vs) > 1 {
		return c, hintMalformed
	}
	if relayed {
		if h.Country == "" {
			h.Country = s.countryOf(h.Geohash)
		}
		c = NewCell(h.Country, "", "")
	}
	switch {
	case c.country[0] == 0 && relayed:
		return c, hintNoCountry
	case c.country[0] == 0:
		return c, hintUnplaced
	case h.Country != "" && h.Country != c.Country(), !s.inCountry(h.Geohash, c.country):
		return c, hintElsewhere
	}
	c.geohash = geohashFrom(h.Geohash, s.precision)
	return c, ""
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// countryOf returns the country of the most specific feed cell containing
// geohash gh, or "" when that cell has several countries or none holds gh.
func (s *Selector) countryOf(gh string) string {
	g := geohashFrom(gh, len(gh))
	for n := g.len(); n > 0; n-- {
		if owners, ok := s.placed[g.prefix(n)]; ok {
			if len(owners) != 1 {
				return ""
			}
			for cc := range owners {
				return string(cc[:])
			}
		}
	}
	return ""
}

// inCountry reports whether geohash gh may lie in country: false only when
// the most specific feed cell containing gh belongs to other countries alone.
// Without country borders, the feed is what the proxy knows of where places
// are.
func (s *Selector) inCountry(gh string, country [2]byte) bool {
	g := geohashFrom(gh, len(gh))
	for n := g.len(); n > 0; n-- {
		if owners, ok := s.placed[g.prefix(n)]; ok {
			_, mine := owners[country]
			return mine
		}
	}
	return true
}
