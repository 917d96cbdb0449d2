package geoegress

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masqued/masqued/geoegress/geohint"
)

func TestLocatorCell(t *testing.T) {
	l := OpenTestLocator(t)
	for _, tc := range []struct{ ip, want string }{
		{ClientLondon, "GB-ENG/gcpv"},
		{ClientEdinburgh, "GB-SCT/gcvw"},
		{ClientParis, "FR-IDF/u09t"},
		{ClientNoCity, "GB"},
		{"127.0.0.99", ""},
		{"::1", ""},
		{"::ffff:" + ClientParis, "FR-IDF/u09t"},
	} {
		c, err := l.Cell(netip.MustParseAddr(tc.ip), 4)
		if err != nil {
			t.Fatalf("%s: %v", tc.ip, err)
		}
		if c.String() != tc.want {
			t.Errorf("%s: cell %q, want %q", tc.ip, c, tc.want)
		}
	}
}

func TestOpenLocatorErrors(t *testing.T) {
	if _, err := OpenLocator(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("a missing database opened")
	}
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(bad, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocator(bad); err == nil {
		t.Error("a file that is not a database opened")
	}
}

func TestLocate(t *testing.T) {
	l := OpenTestLocator(t)
	s := testSelector(t, testFeed, Config{})
	for _, tc := range []struct {
		name, client string
		hints        []string
		want         string // cell
		detail       string // substring; "" = none
	}{
		{"address only", ClientLondon, nil, "GB-ENG/gcpv", ""},
		{"hint refines", ClientLondon, []string{"gcpuuz-GB"}, "GB-ENG/gcpu", ""},
		{"draft hint", ClientLondon, []string{`"gcpuuz"`}, "GB-ENG/gcpu", ""},
		{"hint in another country", ClientLondon, []string{"u09tvw-FR"}, "GB-ENG/gcpv", "outside the country"},
		{"draft hint in a French cell", ClientLondon, []string{`"u09tvw"`}, "GB-ENG/gcpv", "outside the country"},
		{"malformed hint", ClientLondon, []string{"somewhere"}, "GB-ENG/gcpv", "malformed"},
		{"two hints", ClientLondon, []string{"gcpu", "gcpv"}, "GB-ENG/gcpv", "malformed"},
		{"hint without a place", "127.0.0.99", []string{"gcpu-GB"}, "", "no known country"},
		{"country-level address, hint", ClientNoCity, []string{"gcvw"}, "GB/gcvw", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLocate(t, s, l, nil, tc.client, tc.hints, tc.want, tc.detail)
		})
	}
	// Without a database every client is in the unknown cell.
	r := &http.Request{RemoteAddr: ClientLondon + ":1", Header: http.Header{}}
	r.Header.Set(geohint.Header, "gcpv-GB")
	c, detail := s.locate(nil, nil, r)
	if c != (Cell{}) || !strings.Contains(detail, "no known country") {
		t.Errorf("no database: %q, %q", c, detail)
	}
}

// TestLocateTrustedRelay places the clients of a trusted relay by their hint
// alone: the relay is in London, its clients anywhere; the relay's address
// never places them, and other relays' clients keep the cross-check.
func TestLocateTrustedRelay(t *testing.T) {
	l := OpenTestLocator(t)
	s := testSelector(t, testFeed, Config{})
	trusted := []netip.Prefix{netip.MustParsePrefix(ClientLondon + "/32"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name, peer string
		hints      []string
		want       string // cell
		detail     string // substring; "" = none
	}{
		{"hint in another country", ClientLondon, []string{"u09tvw-FR"}, "FR/u09t", ""},
		{"country from the feed", ClientLondon, []string{"u09tvw"}, "FR/u09t", ""},
		{"same country", ClientLondon, []string{"gcvwr-GB"}, "GB/gcvw", ""},
		{"no hint: unknown, not the relay's place", ClientLondon, nil, "", ""},
		{"geohash in no feed cell, no country", ClientLondon, []string{"s000"}, "", "without a country"},
		{"country the hint's geohash is not in", ClientLondon, []string{"u09tvw-GB"}, "GB", "outside the country"},
		{"malformed", ClientLondon, []string{"nowhere!"}, "", "malformed"},
		{"IPv6 relay", "[::1]", []string{"gcpuuz-GB"}, "GB/gcpu", ""},
		{"untrusted peer keeps the cross-check", ClientParis, []string{"gcpuuz-GB"}, "FR-IDF/u09t", "outside the country"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLocate(t, s, l, trusted, tc.peer, tc.hints, tc.want, tc.detail)
		})
	}
}

// checkLocate locates a request from peer with hints and checks its cell
// and the detail (a substring; "" = none).
func checkLocate(t *testing.T, s *Selector, l *Locator, trusted []netip.Prefix, peer string, hints []string, want, wantDetail string) {
	t.Helper()
	r := &http.Request{RemoteAddr: peer + ":4711", Header: http.Header{}}
	for _, h := range hints {
		r.Header.Add(geohint.Header, h)
	}
	c, detail := s.locate(l, trusted, r)
	if c.String() != want {
		t.Errorf("cell %q, want %q", c, want)
	}
	if (wantDetail == "") != (detail == "") || !strings.Contains(detail, wantDetail) {
		t.Errorf("detail %q, want %q", detail, wantDetail)
	}
}

// BenchmarkLocateSelect is the geo cost of one tunnel: the database lookup,
// the hint and the selection.
func BenchmarkLocateSelect(b *testing.B) {
	l := OpenTestLocator(b)
	s := testSelector(b, testFeed, Config{})
	r := &http.Request{RemoteAddr: ClientLondon + ":4711", Header: http.Header{}}
	r.Header.Set(geohint.Header, "gcpuuz-GB")
	b.ReportAllocs()
	for b.Loop() {
		c, _ := s.locate(l, nil, r)
		s.Select(c)
	}
}
