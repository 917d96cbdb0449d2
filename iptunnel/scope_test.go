package iptunnel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/masqued/masqued/masque/connectip"
)

// routesValue is the value of the ROUTE_ADVERTISEMENT capsule for rs.
func routesValue(t testing.TB, rs []connectip.Range) []byte {
	t.Helper()
	typ, v, err := connectip.SplitCapsule(connectip.AppendRouteAdvertisement(nil, rs))
	if err != nil || typ != connectip.TypeRouteAdvertisement {
		t.Fatalf("capsule type %d, %v", typ, err)
	}
	return v
}

func TestRoutes(t *testing.T) {
	s := Scope{Prefixes: []netip.Prefix{netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("1.2.3.4/32")}, Proto: protoTCP}
	want := []connectip.Range{
		{Start: netip.MustParseAddr("1.2.3.4"), End: netip.MustParseAddr("1.2.3.4"), Proto: protoTCP},
		{Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.255.255.255"), Proto: protoTCP},
		{Start: netip.MustParseAddr("fd00::"), End: netip.MustParseAddr("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Proto: protoTCP},
	}
	var got []connectip.Range
	if err := connectip.ParseRoutes(routesValue(t, s.routes(true, true)), func(r connectip.Range) { got = append(got, r) }); err != nil || !slices.Equal(got, want) {
		t.Fatalf("parsed %v, %v; want %v", got, err, want)
	}
	dup := Scope{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("192.0.2.7/32")}}
	if rs := dup.routes(true, false); len(rs) != 1 || rs[0].End.String() != "192.0.2.255" {
		t.Fatalf("overlapping prefixes advertised as %v, want one range", rs)
	}
	all := (&Scope{}).routes(true, false)
	if len(all) != 1 || all[0].Start.String() != "0.0.0.0" || all[0].End.String() != "255.255.255.255" {
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
		if got := fmt.Sprint(s.Prefixes); tc.ok && (got != tc.prefixes || s.Proto != tc.proto) {
			t.Errorf("%s: scope %s proto %d, want %s proto %d", tc.uri, got, s.Proto, tc.prefixes, tc.proto)
		}
	}
	if !(&Scope{Proto: protoTCP}).allows(netip.MustParseAddr("1.1.1.1"), protoICMP) {
		t.Error("ICMP refused by a protocol scope; RFC 9484 §4.6 always allows it")
	}
}
