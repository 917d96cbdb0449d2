package connectip

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// value splits a capsule made by this package, failing t if it does not
// split.
func value(t *testing.T, b []byte, typ uint64) []byte {
	t.Helper()
	got, v, err := SplitCapsule(b)
	if err != nil || got != typ {
		t.Fatalf("capsule type %d, %v; want %d", got, err, typ)
	}
	return v
}

func TestAddressAssignRoundTrip(t *testing.T) {
	want := []Address{
		{ID: 0, Prefix: netip.MustParsePrefix("10.78.0.2/32")},
		{ID: 7, Prefix: netip.MustParsePrefix("fd78::/64")},
	}
	var got []Address
	if err := ParseAddresses(value(t, AppendAddressAssign(nil, want), TypeAddressAssign), func(a Address) {
		got = append(got, a)
	}); err != nil || !slices.Equal(got, want) {
		t.Fatalf("parsed %v, %v; want %v", got, err, want)
	}
	for _, bad := range [][]byte{
		{0, 5, 10, 0, 0, 0, 32},     // version 5
		{0, 4, 10, 0, 0, 1, 24},     // host bits set
		{0, 4, 10, 0, 0, 0, 33},     // prefix longer than the address
		{0, 6, 0xfd, 0, 0, 0, 0, 0}, // truncated address
		{0, 4, 10, 0, 0, 0},         // no prefix length
	} {
		if err := ParseAddresses(bad, func(Address) {}); err == nil {
			t.Errorf("ParseAddresses(%x) accepted it", bad)
		}
	}
}

func TestRouteOrder(t *testing.T) {
	a := PrefixRange(netip.MustParsePrefix("1.2.3.4/32"), 6)
	b := PrefixRange(netip.MustParsePrefix("10.0.0.0/8"), 6)
	if err := ParseRoutes(value(t, AppendRouteAdvertisement(nil, []Range{a, b}), TypeRouteAdvertisement), func(Range) {}); err != nil {
		t.Fatalf("ordered ranges refused: %v", err)
	}
	if err := ParseRoutes(value(t, AppendRouteAdvertisement(nil, []Range{b, a}), TypeRouteAdvertisement), func(Range) {}); err == nil {
		t.Fatal("out-of-order ranges accepted (RFC 9484 §4.7.3)")
	}
	if b.End.String() != "10.255.255.255" {
		t.Fatalf("PrefixRange(10.0.0.0/8) ends at %s", b.End)
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct{ start, end, want string }{
		{"0.0.0.0", "255.255.255.255", "[0.0.0.0/0]"},
		{"10.0.0.0", "10.0.0.255", "[10.0.0.0/24]"},
		{"10.0.0.1", "10.0.0.6", "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "[::/0]"},
		{"255.255.255.255", "255.255.255.255", "[255.255.255.255/32]"},
	} {
		got := fmt.Sprint(AppendRangePrefixes(nil, netip.MustParseAddr(tc.start), netip.MustParseAddr(tc.end)))
		if got != tc.want {
			t.Errorf("%s-%s: %s, want %s", tc.start, tc.end, got, tc.want)
		}
	}
}

// FuzzCapsules checks that the CONNECT-IP capsule parsers refuse or accept
// without panicking, and that what they accept encodes back to the same
// entries (not always the same bytes: a Request ID may come in a longer
// varint than needed).
func FuzzCapsules(f *testing.F) {
	f.Add(AppendAddressAssign(nil, []Address{{0, netip.MustParsePrefix("10.78.0.2/32")}, {3, netip.MustParsePrefix("fd78::/64")}})[2:])
	f.Add(AppendRouteAdvertisement(nil, []Range{PrefixRange(netip.MustParsePrefix("0.0.0.0/0"), 0), PrefixRange(netip.MustParsePrefix("::/0"), 0)})[2:])
	f.Add([]byte{1, 4, 0, 0, 0, 0, 32})
	f.Fuzz(func(t *testing.T, b []byte) {
		var addrs []Address
		if ParseAddresses(b, func(a Address) { addrs = append(addrs, a) }) == nil {
			var again []Address
			v := value(t, AppendAddressAssign(nil, addrs), TypeAddressAssign)
			if err := ParseAddresses(v, func(a Address) { again = append(again, a) }); err != nil || !slices.Equal(addrs, again) {
				t.Fatalf("addresses %v encode to %x, parsed back as %v, %v", addrs, v, again, err)
			}
		}
		var routes []Range
		if ParseRoutes(b, func(r Range) { routes = append(routes, r) }) == nil {
			var again []Range
			v := value(t, AppendRouteAdvertisement(nil, routes), TypeRouteAdvertisement)
			if err := ParseRoutes(v, func(r Range) { again = append(again, r) }); err != nil || !slices.Equal(routes, again) {
				t.Fatalf("routes %v encode to %x, parsed back as %v, %v", routes, v, again, err)
			}
		}
	})
}
