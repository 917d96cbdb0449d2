package iptunnel

import (
	"context"
	"net/netip"
	"slices"
	"testing"
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

// FuzzCapsules checks that the CONNECT-IP capsule parsers refuse or accept
// without panicking, and that what they accept encodes back to the same
// entries (not always the same bytes: a Request ID may come in a longer
// varint than needed).
func FuzzCapsules(f *testing.F) {
	f.Add(appendAddressAssign(nil, []assignedAddress{{0, netip.MustParsePrefix("10.78.0.2/32")}, {3, netip.MustParsePrefix("fd78::/64")}})[2:])
	f.Add(appendRouteAdvertisement(nil, (&Scope{}).routes(true, true))[2:])
	f.Add([]byte{1, 4, 0, 0, 0, 0, 32})
	f.Fuzz(func(t *testing.T, b []byte) {
		var addrs []assignedAddress
		if parseAddresses(b, func(a assignedAddress) { addrs = append(addrs, a) }) == nil {
			v := capsuleValue(t, appendAddressAssign(nil, addrs), capsuleAddressAssign)
			var again []assignedAddress
			if err := parseAddresses(v, func(a assignedAddress) { again = append(again, a) }); err != nil || !slices.Equal(addrs, again) {
				t.Fatalf("addresses %v encode to %x, parsed back as %v, %v", addrs, v, again, err)
			}
		}
		var routes []ipRange
		if parseRoutes(b, func(r ipRange) { routes = append(routes, r) }) == nil {
			v := capsuleValue(t, appendRouteAdvertisement(nil, routes), capsuleRouteAdvertisement)
			var again []ipRange
			if err := parseRoutes(v, func(r ipRange) { again = append(again, r) }); err != nil || !slices.Equal(routes, again) {
				t.Fatalf("routes %v encode to %x, parsed back as %v, %v", routes, v, again, err)
			}
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
		adv := appendRouteAdvertisement(nil, s.routes(true, true))
		if err := parseRoutes(capsuleValue(t, adv, capsuleRouteAdvertisement), func(ipRange) {}); err != nil {
			t.Fatalf("scope %+v advertises invalid routes: %v", s, err)
		}
	})
}
