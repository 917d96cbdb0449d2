package geoegress

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// Options say what a geo-egress Dialer is built from: masqued's flags.
type Options struct {
	Pools     string // geofeed file of egress pools; required
	Key       string // file with the secret that keys selection; "" = a random key per start
	GeoIP     string // MaxMind-format database file; "" = no geolocation (the default pool)
	Precision int    // geohash characters in a cell; 0 = Config's default (4)

	Registerer prometheus.Registerer // see Config.Registerer; nil = not counted
}

// Open builds a Dialer from f. Without a key file, the key is random and the
// cells map to other addresses after every restart (and on every instance).
// Close the Dialer to release the database.
func Open(f Options) (*Dialer, error) {
	feed, err := os.Open(f.Pools)
	if err != nil {
		return nil, fmt.Errorf("egress pools: %w", err)
	}
	entries, err := ParseFeed(feed)
	feed.Close()
	if err != nil {
		return nil, fmt.Errorf("egress pools %s: %w", f.Pools, err)
	}
	key := make([]byte, 32)
	if f.Key != "" {
		if key, err = os.ReadFile(f.Key); err != nil {
			return nil, fmt.Errorf("egress key: %w", err)
		}
		key = bytes.TrimSpace(key)
	} else {
		rand.Read(key)
	}
	s, err := NewSelector(Config{Entries: entries, Key: key, Precision: f.Precision, Registerer: f.Registerer})
	if err != nil {
		return nil, err
	}
	d := &Dialer{Selector: s}
	if f.GeoIP != "" {
		if d.Locator, err = OpenLocator(f.GeoIP); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Close releases the Dialer's database, if any.
func (d *Dialer) Close() error {
	if d.Locator == nil {
		return nil
	}
	return d.Locator.Close()
}
