package geoegress

import (
	"net/http"

	"github.com/masqued/masqued/tunnel"
)

// SourceFor returns the egress addresses of r's client, as DialDetail
// dials from: for CONNECT-IP, whose packets leave from them by source NAT
// (iptunnel.EgressSelector).
func (d *Dialer) SourceFor(r *http.Request) tunnel.Source {
	cell, _ := d.Selector.locate(d.Locator, d.TrustedRelays, r)
	return d.Selector.Select(cell)
}
