package geoegress

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/masqued/masqued/geoegress/geotest"
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
	path := filepath.Join(t.TempDir(), "test-city.mmdb")
	err := geotest.Write(path, map[netip.Addr]geotest.Place{
		netip.MustParseAddr(ClientLondon):    {Country: "GB", Subdivision: "ENG", Lat: 51.5074, Lon: -0.1278},
		netip.MustParseAddr(ClientEdinburgh): {Country: "GB", Subdivision: "SCT", Lat: 55.9533, Lon: -3.1883},
		netip.MustParseAddr(ClientParis):     {Country: "FR", Subdivision: "IDF", Lat: 48.8566, Lon: 2.3522},
		netip.MustParseAddr(ClientNoCity):    {Country: "GB"},
	})
	if err != nil {
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
