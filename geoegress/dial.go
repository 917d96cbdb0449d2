package geoegress

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// Dialer is the tunnel core's Dialer with geo-hashed egress: it locates the
// client of each request, selects the cell's egress address per family, and
// connects with Happy Eyeballs from those addresses. The client's address is
// used for the lookup and then dropped. A Dialer is safe for concurrent use.
type Dialer struct {
	Selector *Selector // required
	Locator  *Locator  // nil = no geolocation: every client takes the default pool
	Net      tunnel.NetDialer
	// AllowPrivate permits targets inside the egress pools, as
	// tunnel.Policy.AllowPrivate does for the host's other addresses.
	// Without it they are refused: a prefix routed to this host (AnyIP)
	// reaches the host's own services at every address in it.
	AllowPrivate bool

	// TrustedRelays are the addresses of ingress relays (masqued
	// -trust-geohash-from-relays) whose requests are placed by their
	// Sec-CH-Geohash hint alone, without the cross-check against the
	// address: the address is the relay's, not the client's.
	TrustedRelays []netip.Prefix
}

// DialDetail implements tunnel.DetailDialer. Only addresses of a family that
// has an egress address are dialed: leaving from an address outside the
// pools would defeat them. A Sec-CH-Geohash hint that did not count becomes
// the detail, not a failure.
func (d *Dialer) DialDetail(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, string, error) {
	cell, detail := d.Selector.locate(d.Locator, d.TrustedRelays, r)
	src := d.Selector.Select(cell)
	usable := make([]netip.AddrPort, 0, len(addrs))
	var refusal error
	for _, ap := range addrs {
		switch {
		case !d.AllowPrivate && d.Selector.inPools(ap.Addr()):
			refusal = &masque.Error{HTTPStatus: http.StatusForbidden, Kind: masque.StatusIPProhibited,
				Details: "target is one of the proxy's egress addresses"}
		case !src.ForFamily(ap.Addr()).IsValid():
			refusal = fmt.Errorf("no egress address for the target's address family: %w", syscall.ENETUNREACH)
		default:
			usable = append(usable, ap)
		}
	}
	if len(usable) == 0 {
		return nil, detail, refusal
	}
	c, err := d.Net.DialFrom(ctx, network, usable, src)
	return c, detail, err
}

// Dial implements tunnel.Dialer.
func (d *Dialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, error) {
	c, _, err := d.DialDetail(ctx, network, addrs, r)
	return c, err
}
