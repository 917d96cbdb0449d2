// Package geotest writes small GeoIP2-City-shaped databases that place
// chosen addresses, so that tests and the interop runner can exercise geo
// egress on loopback without a binary database in the repository.
package geotest

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Place is where the database puts an address. Without a Subdivision the
// record has a country only, and no location.
type Place struct {
	Country     string // ISO 3166-1, e.g. "GB"
	Subdivision string // ISO 3166-2 without the country, e.g. "ENG"
	Lat, Lon    float64
}

// Write writes a database placing each address to path.
func Write(path string, places map[netip.Addr]Place) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "masqued-Test-City",
		Description:             map[string]string{"en": "masqued test clients"},
		IncludeReservedNetworks: true,
		RecordSize:              24,
	})
	if err != nil {
		return err
	}
	for addr, p := range places {
		m := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)}}
		if p.Subdivision != "" {
			m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(p.Subdivision)}}
			m["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(p.Lat), "longitude": mmdbtype.Float64(p.Lon)}
		}
		prefix := netip.PrefixFrom(addr, addr.BitLen())
		if err := tree.Insert(&net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(prefix.Bits(), addr.BitLen())}, m); err != nil {
			return fmt.Errorf("placing %s: %w", addr, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
