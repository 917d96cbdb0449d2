package geoegress

import (
	"bytes"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/masqued/masqued/geoegress/geohint"
)

func FuzzParseFeed(f *testing.F) {
	for _, s := range []string{
		testFeed,
		"127.0.0.0/20,GB,GB-ENG,London,,gcpv\n",
		"2001:db8::/32,US,US-CA,San Francisco,,9q8y\n# comment\n\n",
		"127.0.0.1,gb,gb-eng,,,GCPV",
		"127.0.0.0/24,GB\n127.0.0.9,FR",
		"::ffff:1.2.3.4/128,GB",
		"1.2.3.4/32,,,,,,,,,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		es, err := ParseFeed(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses publishes and parses back to itself.
		again, err := ParseFeed(bytes.NewReader(appendFeed(nil, es)))
		if err != nil {
			t.Fatalf("published feed does not parse: %v", err)
		}
		if len(again) != len(es) {
			t.Fatalf("%d entries read back as %d", len(es), len(again))
		}
		for i := range es {
			if again[i] != es[i] {
				t.Fatalf("entry %d: %+v read back as %+v", i, es[i], again[i])
			}
		}
		if len(es) > 0 && len(es) < 64 {
			s, err := NewSelector(Config{Entries: es, Key: testKey})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				src := s.Select(NewCell(e.Country, e.Region, e.Geohash))
				if !src.IPv4.IsValid() && !src.IPv6.IsValid() {
					t.Fatalf("no address for the cell of %+v", e)
				}
			}
		}
	})
}

func FuzzParseHint(f *testing.F) {
	for _, s := range []string{"u4pruyd-GB", `"u4pruyd"`, `"u4pruyd-gb"`, "", `"`, "gcpvj0d0d0d0d", "u4pruyd-", " x-YZ "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := geohint.Parse(in)
		if err != nil {
			return
		}
		if !geohint.Valid(h.Geohash) || h.Geohash != strings.ToLower(h.Geohash) {
			t.Fatalf("%q: geohash %q", in, h.Geohash)
		}
		if h.Country != "" && !geohint.IsCountry(h.Country) {
			t.Fatalf("%q: country %q", in, h.Country)
		}
		c := NewCell("GB", "", h.Geohash)
		if c.geohash.String() != h.Geohash {
			t.Fatalf("%q: cell geohash %q", in, c.geohash)
		}
	})
}

// FuzzLocateRelayed places requests with any Sec-CH-Geohash value from a
// trusted relay and from an untrusted peer: no panic; a relayed client's
// cell is the hint's alone (a country only where the hint or the feed gives
// one), and every cell selects an egress address.
func FuzzLocateRelayed(f *testing.F) {
	for _, s := range []string{"u09tvw-FR", "u09tvw", "gcpuuz-GB", "s000", "u09tvw-GB", `"gcvw"`, "", "nowhere!", "gcpv-ZZ"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	l := OpenTestLocator(f)
	s := testSelector(f, testFeed, Config{})
	trusted := []netip.Prefix{netip.MustParsePrefix(ClientLondon + "/32")}
	f.Fuzz(func(t *testing.T, hint string, fromRelay bool) {
		peer := ClientParis
		if fromRelay {
			peer = ClientLondon
		}
		r := &http.Request{RemoteAddr: peer + ":4711", Header: http.Header{geohint.Header: {hint}}}
		c, _ := s.locate(l, trusted, r)
		if h, err := geohint.Parse(hint); fromRelay && err == nil && h.Country != "" && c.Country() != "" && c.Country() != h.Country {
			t.Fatalf("%q from a relay: cell %s, not in the hint's country", hint, c)
		}
		if fromRelay && c.region[0] != 0 {
			t.Fatalf("%q from a relay: cell %s has a region, which only an address gives", hint, c)
		}
		if src := s.Select(c); !src.IPv4.IsValid() && !src.IPv6.IsValid() {
			t.Fatalf("%q: no egress address for %s", hint, c)
		}
	})
}
