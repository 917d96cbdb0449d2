package geoegress_test

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
)

func openDialer(t *testing.T, feed string, files geoegress.Options) *geoegress.Dialer {
	t.Helper()
	dir := t.TempDir()
	files.Pools = filepath.Join(dir, "pools.csv")
	if err := os.WriteFile(files.Pools, []byte(feed), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := geoegress.Open(files)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestDialerRefusals: a target inside the pools is the proxy itself; a
// target whose family has no egress address is unroutable from the pools.
func TestDialerRefusals(t *testing.T) {
	d := openDialer(t, "127.0.0.2,GB\n127.0.0.3,,,,,\n", geoegress.Options{})
	origin := testnet.WhoAmI(t, testnet.IPv4)
	ctx := testnet.Context(t, 10*time.Second)
	r := &http.Request{RemoteAddr: "127.0.0.1:1234", Header: http.Header{}}
	for _, tc := range []struct {
		target string
		status int
		kind   string
	}{
		{"127.0.0.2:80", http.StatusForbidden, masque.StatusIPProhibited},
		{"[::1]:80", http.StatusBadGateway, masque.StatusIPUnroutable},
	} {
		_, err := d.Dial(ctx, "tcp", []netip.AddrPort{netip.MustParseAddrPort(tc.target)}, r)
		if status, e := masque.StatusOf(err); status != tc.status || e.Kind != tc.kind {
			t.Errorf("%s: %d %s (%v), want %d %s", tc.target, status, e.Kind, err, tc.status, tc.kind)
		}
	}
	// The unusable address is skipped, the usable one dialed.
	c, err := d.Dial(ctx, "tcp", []netip.AddrPort{netip.MustParseAddrPort("[::1]:80"), origin.AddrPort()}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if seen := testnet.ReadWhoAmI(t, c); seen.Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("left from %s, want the default pool's 127.0.0.3", seen)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("a key of sixteen bytes or more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	feed := "127.0.0.2,GB\n127.0.0.3,GB\n127.0.0.4,GB\n127.0.0.5,GB\n"
	cell := geoegress.NewCell("GB", "", "gcpv")
	a := openDialer(t, feed, geoegress.Options{Key: key, GeoIP: geoegress.WriteGeoDB(t)})
	b := openDialer(t, feed, geoegress.Options{Key: key})
	if a.Selector.Select(cell) != b.Selector.Select(cell) {
		t.Error("one key file, two selections")
	}
	if a.Locator == nil || b.Locator != nil {
		t.Error("the database is not opened as asked")
	}
	for _, tc := range []struct {
		name  string
		files geoegress.Options
		want  string
	}{
		{"no pools file", geoegress.Options{Pools: filepath.Join(dir, "missing")}, "egress pools"},
		{"bad pools", geoegress.Options{Pools: key}, "geofeed line 1"},
		{"no key file", geoegress.Options{Pools: "testdata/pools.csv", Key: filepath.Join(dir, "missing")}, "egress key"},
		{"short key", geoegress.Options{Pools: "testdata/pools.csv", Key: "testdata/short.key"}, "16 bytes"},
		{"no database", geoegress.Options{Pools: "testdata/pools.csv", GeoIP: filepath.Join(dir, "missing")}, "geolocation database"},
	} {
		_, err := geoegress.Open(tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}
