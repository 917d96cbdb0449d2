package iptunnel

import (
	"context"
	"net/netip"
	"testing"

	"github.com/masqued/masqued/masque/connectip"
)

// FuzzParseHeader checks that any input parses or is refused without
// panicking, that what parses is self-consistent, and that an ICMP error
// about it is itself a well-formed packet that nothing answers.
func FuzzParseHeader(f *testing.F) {
	f.Add(ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, ports(40000, 443)))
	f.Add(ipv6Packet("fd00::2", "2001:4860::8888", 0, append([]byte{protoUDP, 0, 0, 0, 0, 0, 0, 0}, ports(1, 53)...)))
	f.Add(ipv6Packet("fd00::2", "fd00::1", 44, []byte{protoUDP, 0, 0, 8, 0, 0, 0, 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseHeader(b)
		if !ok {
			return
		}
		if h.transport > len(b) || h.src.Is4() != h.dst.Is4() {
			t.Fatalf("inconsistent header %+v for %d bytes", h, len(b))
		}
		out := make([]byte, 1280)
		gw := netip.MustParseAddr("10.0.0.1")
		if h.src.Is6() {
			gw = netip.MustParseAddr("fd00::1")
		}
		n := appendICMPError(out, gw, b, h, icmpProhibited, 0)
		if n == 0 {
			return
		}
		e, ok := parseHeader(out[:n])
		if !ok || e.dst != h.src || !isICMPError(out[:n], e) {
			t.Fatalf("ICMP error %x does not parse as one to %s", out[:n], h.src)
		}
	})
}

// FuzzScope checks that any request path matches or is refused without
// panicking, and that an accepted scope advertises valid routes.
func FuzzScope(f *testing.F) {
	f.Add("/.well-known/masque/ip/*/*/")
	f.Add("/.well-known/masque/ip/192.0.2.0%2F24/6/")
	f.Add("/.well-known/masque/ip/2001%3Adb8%3A%3A42/17/")
	f.Add("/.well-known/masque/ip/example.com/*/")
	tp, err := ParseTemplate(DefaultTemplate)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		s, err := tp.match(context.Background(), uri, noResolver{})
		if err != nil {
			return
		}
		if err := connectip.ParseRoutes(routesValue(t, s.routes(true, true)), func(connectip.Range) {}); err != nil {
			t.Fatalf("scope %+v advertises invalid routes: %v", s, err)
		}
	})
}
