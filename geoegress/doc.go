// Package geoegress chooses where a tunnel leaves the proxy from. Origins see
// the egress address: if everyone shares one, local results are for the
// wrong city and everyone shares fate; if each user has their own, users
// become trackable. So clients are placed in coarse cells (a country, its
// region and a geohash prefix, from a MaxMind-format database and the
// client's Sec-CH-Geohash hint), and each cell leaves from an address of the
// pool registered for its area, picked by keyed rendezvous hashing: everyone
// in a cell shares it, and nobody is singled out.
//
// The pools come from a geofeed (RFC 8805) that the proxy also publishes
// (Selector.FeedHandler), so that geolocation providers place each address
// where its clients are. Dialer plugs all this into the tunnel core's Dialer
// seam, with the core's Happy Eyeballs dialing from one pinned address per
// family. Client addresses are used for the lookup and never kept or logged.
package geoegress
