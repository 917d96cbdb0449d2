package geoegress

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

const testFeed = `# egress pools
127.0.0.2,GB,GB-ENG,London,,gcpv
127.0.0.3/32,GB,GB-ENG,London,,gcpv
127.0.0.4,GB,GB-SCT,Edinburgh,,gcvw
127.0.0.5,GB,,,,
127.0.0.6,FR,FR-IDF,Paris,,u09t
127.0.0.7,,,,,
::1/128,GB,GB-ENG,London,,gcpv
2001:db8:1::/64,FR,FR-IDF,Paris,,u09t, ignored extra column
`

func TestParseFeed(t *testing.T) {
	es, err := ParseFeed(strings.NewReader(testFeed))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 8 {
		t.Fatalf("%d entries, want 8", len(es))
	}
	want := Entry{Prefix: netip.MustParsePrefix("127.0.0.2/32"), Country: "GB", Region: "GB-ENG", City: "London", Geohash: "gcpv"}
	if es[0] != want {
		t.Errorf("first entry %+v, want %+v", es[0], want)
	}
	if es[7].Geohash != "u09t" || es[7].Prefix.Bits() != 64 {
		t.Errorf("last entry %+v", es[7])
	}
}

func TestParseFeedErrors(t *testing.T) {
	for _, tc := range []struct{ name, feed, want string }{
		{"no prefix", ",GB", "no prefix"},
		{"bad prefix", "127.0.0.x,GB", "prefix"},
		{"host bits", "127.0.0.1/24,GB", "host bits"},
		{"too wide", "10.0.0.0/8,GB", "shorter than /20"},
		{"mapped", "::ffff:127.0.0.1/128,GB", "IPv4-mapped"},
		{"zone", "fe80::1%lo/128,GB", "zone"},
		{"country", "127.0.0.1,GBR", "ISO 3166-1"},
		{"region of other country", "127.0.0.1,GB,FR-IDF", "ISO 3166-2"},
		{"region shape", "127.0.0.1,GB,GB-ENGLAND", "ISO 3166-2"},
		{"geohash alphabet", "127.0.0.1,GB,,,,gcpa", "geohash"},
		{"geohash without country", "127.0.0.1,,,,,gcpv", "needs a country"},
		{"quote", "127.0.0.1,GB,,\"London", "quotes"},
		{"overlap", "127.0.0.0/24,GB\n127.0.0.9,FR", "overlaps"},
		{"duplicate", "127.0.0.9,GB\n127.0.0.9/32,FR", "overlaps"},
		{"long line", "127.0.0.1,GB,," + strings.Repeat("x", maxFeedLine), "token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFeed(strings.NewReader(tc.feed))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var fe *FeedError
			if tc.name != "long line" && (!errors.As(err, &fe) || fe.Line < 1) {
				t.Errorf("error %v has no line number", err)
			}
		})
	}
}

func TestFeedHandler(t *testing.T) {
	es, err := ParseFeed(strings.NewReader(testFeed))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSelector(Config{Entries: es, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.FeedHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/.well-known/geofeed.csv")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "127.0.0.2/32,GB,GB-ENG,London,,gcpv\n") {
		t.Errorf("feed lacks the first entry:\n%s", body)
	}
	// What we publish reads back as what we serve.
	again, err := ParseFeed(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if again[i] != es[i] {
			t.Errorf("entry %d: published %+v, read back %+v", i, es[i], again[i])
		}
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

func TestGeohash(t *testing.T) {
	// Published examples: geohash.org's ezs42 (42.6, -5.6) and the
	// Wikipedia example u4pruydqqvj (57.64911, 10.40744).
	for _, tc := range []struct {
		lat, lon float64
		want     string
	}{
		{42.6, -5.6, "ezs42"},
		{57.64911, 10.40744, "u4pruydqqvj"},
		{51.5074, -0.1278, "gcpvj0d"}, // London
		{-90, -180, "000"},
		{90, 180, "zzz"},
	} {
		g := encodeGeohash(tc.lat, tc.lon, len(tc.want))
		if g.String() != tc.want {
			t.Errorf("encodeGeohash(%v, %v) = %s, want %s", tc.lat, tc.lon, g, tc.want)
		}
	}
}
