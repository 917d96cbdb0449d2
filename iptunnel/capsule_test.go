package iptunnel

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// capsuleValue strips a capsule's type and length.
func capsuleValue(t *testing.T, b []byte, typ uint64) []byte {
	t.Helper()
	got, n, err := quicvarint.Parse(b)
	if err != nil || got != typ {
		t.Fatalf("capsule type %d, %v; want %d", got, err, typ)
	}
	l, m, err := quicvarint.Parse(b[n:])
	if err != nil || int(l) != len(b)-n-m {
		t.Fatalf("capsule length %d, %v; have %d bytes", l, err, len(b)-n-m)
	}
	return b[n+m:]
}

func TestAddressAssignRoundTrip(t *testing.T) {
	want := []assignedAddress{
		{id: 0, prefix: netip.MustParsePrefix("10.78.0.2/32")},
		{id: 7, prefix: netip.MustParsePrefix("fd78::/64")},
	}
	var got []assignedAddress
	if err := parseAddresses(capsuleValue(t, appendAddressAssign(nil, want), capsuleAddressAssign), func(a assignedAddress) {
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
		if err := parseAddresses(bad, func(assignedAddress) {}); err == nil {
			t.Errorf("parseAddresses(%x) accepted it", bad)
		}
	}
}

func TestRoutes(t *testing.T) {
	s := Scope{Prefixes: []netip.Prefix{netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("1.2.3.4/32")}, Proto: protoTCP}
	want := []ipRange{
		{netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("1.2.3.4"), protoTCP},
		{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.255.255.255"), protoTCP},
		{netip.MustParseAddr("fd00::"), netip.MustParseAddr("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), protoTCP},
	}
	var got []ipRange
	if err := parseRoutes(capsuleValue(t, appendRouteAdvertisement(nil, s.routes(true, true)), capsuleRouteAdvertisement),
		func(r ipRange) { got = append(got, r) }); err != nil || !slices.Equal(got, want) {
		t.Fatalf("parsed %v, %v; want %v", got, err, want)
	}
	unordered := appendRouteAdvertisement(nil, []ipRange{want[1], want[0]})
	if err := parseRoutes(capsuleValue(t, unordered, capsuleRouteAdvertisement), func(ipRange) {}); err == nil {
		t.Fatal("out-of-order ranges accepted (RFC 9484 §4.7.3)")
	}
	dup := Scope{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("192.0.2.7/32")}}
	if rs := dup.routes(true, false); len(rs) != 1 || rs[0].end.String() != "192.0.2.255" {
		t.Fatalf("overlapping prefixes advertised as %v, want one range", rs)
	}
	all := (&Scope{}).routes(true, false)
	if len(all) != 1 || all[0].start.String() != "0.0.0.0" || all[0].end.String() != "255.255.255.255" {
		t.Fatalf("unscoped IPv4 routes %v", all)
	}
}

type noResolver struct{}

func (noResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.7"), netip.MustParseAddr("2001:db8::7")}, nil
}

func TestTemplateScope(t *testing.T) {
	tp, err := ParseTemplate(DefaultTemplate)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri      string
		ok       bool
		prefixes string
		proto    uint8
	}{
		{"/.well-known/masque/ip/*/*/", true, "[]", 0},
		{"/.well-known/masque/ip/%2A/%2A/", true, "[]", 0},
		{"/.well-known/masque/ip/192.0.2.0%2F24/6/", true, "[192.0.2.0/24]", 6},
		{"/.well-known/masque/ip/2001%3Adb8%3A%3A42/17/", true, "[2001:db8::42/128]", 17},
		{"/.well-known/masque/ip/example.com/*/", true, "[192.0.2.7/32 2001:db8::7/128]", 0},
		{"/.well-known/masque/ip/192.0.2.1%2F24/*/", false, "", 0}, // host bits set
		{"/.well-known/masque/ip/*/256/", false, "", 0},
		{"/.well-known/masque/udp/a/1/", false, "", 0},
	} {
		s, err := tp.match(context.Background(), tc.uri, noResolver{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok %v", tc.uri, err, tc.ok)
			continue
		}
		if got := "[" + joinPrefixes(s.Prefixes) + "]"; tc.ok && (got != tc.prefixes || s.Proto != tc.proto) {
			t.Errorf("%s: scope %s proto %d, want %s proto %d", tc.uri, got, s.Proto, tc.prefixes, tc.proto)
		}
	}
	if !(&Scope{Proto: protoTCP}).allows(netip.MustParseAddr("1.1.1.1"), protoICMP) {
		t.Error("ICMP refused by a protocol scope; RFC 9484 §4.6 always allows it")
	}
}

func joinPrefixes(ps []netip.Prefix) string {
	var s string
	for i, p := range ps {
		if i > 0 {
			s += " "
		}
		s += p.String()
	}
	return s
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct{ start, end, want string }{
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.0", "10.0.0.255", "10.0.0.0/24"},
		{"10.0.0.1", "10.0.0.6", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"255.255.255.255", "255.255.255.255", "255.255.255.255/32"},
	} {
		got := joinPrefixes(appendRangePrefixes(nil, netip.MustParseAddr(tc.start), netip.MustParseAddr(tc.end)))
		if got != tc.want {
			t.Errorf("%s-%s: %s, want %s", tc.start, tc.end, got, tc.want)
		}
	}
}
