package geoegress

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Test clients: loopback addresses that the test database places.
const (
	ClientLondon    = "127.0.0.11" // GB, GB-ENG, geohash gcpvj…
	ClientEdinburgh = "127.0.0.12" // GB, GB-SCT, gcvwr…
	ClientParis     = "127.0.0.13" // FR, FR-IDF, u09tv…
	ClientNoCity    = "127.0.0.14" // GB, no region or location
)

// WriteGeoDB writes a GeoIP2-City-shaped database that places the test
// clients, and returns its path. It is built at test time so that no binary
// database is committed.
func WriteGeoDB(t testing.TB) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "masqued-Test-City",
		Description:             map[string]string{"en": "masqued test clients"},
		IncludeReservedNetworks: true,
		RecordSize:              24,
	})
	if err != nil {
		t.Fatal(err)
	}
	city := func(cc, sub string, lat, lon float64) mmdbtype.Map {
		m := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}
		if sub != "" {
			m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(sub)}}
			m["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon)}
		}
		return m
	}
	for ip, rec := range map[string]mmdbtype.Map{
		ClientLondon:    city("GB", "ENG", 51.5074, -0.1278),
		ClientEdinburgh: city("GB", "SCT", 55.9533, -3.1883),
		ClientParis:     city("FR", "IDF", 48.8566, 2.3522),
		ClientNoCity:    city("GB", "", 0, 0),
	} {
		_, n, err := net.ParseCIDR(ip + "/32")
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test-city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// OpenTestLocator opens WriteGeoDB's database until the test ends.
func OpenTestLocator(t testing.TB) *Locator {
	t.Helper()
	l, err := OpenLocator(WriteGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
