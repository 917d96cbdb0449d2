// Package interop checks that masqued speaks MASQUE the way other
// implementations do: their clients through our proxy, our client through
// their proxies, with real traffic (HTTP/3 inside CONNECT-UDP) on loopback.
// Its tests are focused checks; the full matrix of clients × servers × cases
// is the runner in interop/runner (cmd/masque-interop, make interop).
//
// Each peer is a small program under peers/ in a Go module of its own, so
// that its dependency pins (masque-go needs an older quic-go than masqued
// uses) never reach masqued's module; the tests build it and run it as a
// separate process. Nothing in masqued imports this package.
package interop
