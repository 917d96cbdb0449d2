// Package twohop holds a test only: it proves, from the processes' own logs,
// metrics and answers, the knowledge split of a two-hop chain (issue 17).
// The client, the ingress relay, the egress proxy and the origin each run
// in a network namespace of their own, on addresses of their own, with no
// IP forwarding between them, so the only way from the client to the origin
// is through the two proxies: masque-client -proxy RELAY,EGRESS, QUIC in
// QUIC in QUIC and TLS in TLS. The relay's access log names the egress as
// every tunnel's target, and neither it nor the relay's /metrics ever holds
// the origin's address; the egress's log and /metrics never hold the
// client's (its access log names the relay as the client); the origin sees
// only the egress's pool addresses; the body arrives whole.
//
// With geo egress, an egress that trusts the relay's Sec-CH-Geohash hints
// (-trust-geohash-from-relays) picks the hinted cell's address in any
// country of its pools, while one that does not trust that relay places
// the client by the relay's address and keeps it in the relay's country.
//
// The test needs root (it creates the namespaces) and is skipped without.
package twohop
