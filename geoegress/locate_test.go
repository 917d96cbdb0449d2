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
			r := &http.Request{RemoteAddr: tc.client + ":4711", Header: http.Header{}}
			for _, h := range tc.hints {
				r.Header.Add(geohint.Header, h)
			}
			c, detail := s.locate(l, r)
			if c.String() != tc.want {
				t.Errorf("cell %q, want %q", c, tc.want)
			}
			if (tc.detail == "") != (detail == "") || !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q, want %q", detail, tc.detail)
			}
		})
	}
	// Without a database every client is in the unknown cell.
	r := &http.Request{RemoteAddr: ClientLondon + ":1", Header: http.Header{}}
	r.Header.Set(geohint.Header, "gcpv-GB")
	c, detail := s.locate(nil, r)
	if c != (Cell{}) || !strings.Contains(detail, "no known country") {
		t.Errorf("no database: %q, %q", c, detail)
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
		c, _ := s.locate(l, r)
		s.Select(c)
	}
}
