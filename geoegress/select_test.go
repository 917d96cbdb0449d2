package geoegress

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/internal/testnet"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testSelector(t testing.TB, feed string, c Config) *Selector {
	t.Helper()
	es, err := ParseFeed(strings.NewReader(feed))
	if err != nil {
		t.Fatal(err)
	}
	c.Entries = es
	if c.Key == nil {
		c.Key = testKey
	}
	s, err := NewSelector(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// poolFeed lists n IPv4 addresses 127.0.1.1… in GB, unplaced within it.
func poolFeed(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "127.0.1.%d,GB\n", i)
	}
	return b.String()
}

// syntheticCell returns the i-th of many distinct GB cells.
func syntheticCell(i int) Cell {
	g := encodeGeohash(49+float64(i%100)*0.09, -8+float64(i/100)*0.1, 5)
	return NewCell("GB", "", g.String())
}

func TestSelectDistribution(t *testing.T) {
	const cells, addrs = 10000, 16
	s := testSelector(t, poolFeed(addrs), Config{Precision: 5})
	seen := map[Cell]bool{}
	count := map[netip.Addr]int{}
	before := make([]netip.Addr, cells)
	for i := range cells {
		c := syntheticCell(i)
		if seen[c] {
			t.Fatalf("synthetic cell %d (%s) repeats", i, c)
		}
		seen[c] = true
		before[i] = s.Select(c).IPv4
		count[before[i]]++
	}
	if len(count) != addrs {
		t.Fatalf("cells went to %d addresses, want %d", len(count), addrs)
	}
	// Chi-square against the uniform distribution, 15 degrees of freedom:
	// 37.70 is the 0.1% critical value, so a fair spread fails 1 run in 1000
	// (and the keyed hash makes this run deterministic).
	exp := float64(cells) / addrs
	var chi2 float64
	for _, n := range count {
		d := float64(n) - exp
		chi2 += d * d / exp
	}
	t.Logf("chi-square %.2f over %d addresses", chi2, addrs)
	if chi2 > 37.70 {
		t.Errorf("chi-square %.2f > 37.70: cells are not spread evenly: %v", chi2, count)
	}

	// A 17th address takes only its fair share, from every other address.
	s17 := testSelector(t, poolFeed(addrs+1), Config{Precision: 5})
	moved := 0
	newAddr := netip.MustParseAddr(fmt.Sprintf("127.0.1.%d", addrs+1))
	for i := range cells {
		after := s17.Select(syntheticCell(i)).IPv4
		if after != before[i] {
			moved++
			if after != newAddr {
				t.Fatalf("cell %d moved from %s to %s, not to the new address", i, before[i], after)
			}
		}
	}
	frac := float64(moved) / cells
	t.Logf("adding a 17th address moved %d of %d cells (%.2f%%; ideal %.2f%%)", moved, cells, 100*frac, 100.0/17)
	if frac > 1.0/16+0.01 || frac < 1.0/17-0.01 {
		t.Errorf("%.2f%% of cells moved, want about %.2f%%", 100*frac, 100.0/17)
	}
}

func TestSelectStableAndKeyed(t *testing.T) {
	s := testSelector(t, poolFeed(16), Config{})
	other := testSelector(t, poolFeed(16), Config{Key: []byte("another key of 16+ bytes")})
	differs := 0
	for i := range 200 {
		c := syntheticCell(i)
		a := s.Select(c)
		if s.Select(c) != a {
			t.Fatalf("cell %s: selection is not stable", c)
		}
		if other.Select(c) != a {
			differs++
		}
	}
	if differs < 150 { // about 15/16 of 200 should differ
		t.Errorf("another key changed only %d of 200 selections", differs)
	}
	// A cell is its geohash: a client placed in it by a hint agrees with
	// one placed there by its address's region.
	if s.Select(NewCell("GB", "GB-ENG", "gcvw")) != s.Select(NewCell("GB", "GB-SCT", "gcvw")) {
		t.Error("one geohash cell, two regions, two selections")
	}
	// The precision bounds the cell: finer geohashes in one cell agree.
	if s.Select(NewCell("GB", "", "gcpvj0d")) != s.Select(NewCell("GB", "", "gcpvzzz")) {
		t.Error("two places in the cell gcpv left from different addresses")
	}
}

func TestSelectFallback(t *testing.T) {
	s := testSelector(t, testFeed, Config{})
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	gbPool := map[netip.Addr]bool{a("127.0.0.2"): true, a("127.0.0.3"): true, a("127.0.0.4"): true, a("127.0.0.5"): true}
	for _, tc := range []struct {
		name string
		cell Cell
		in   map[netip.Addr]bool // the IPv4 pool it must come from
		v6   netip.Prefix
	}{
		{"London cell", NewCell("GB", "GB-ENG", "gcpvj0"), map[netip.Addr]bool{a("127.0.0.2"): true, a("127.0.0.3"): true}, netip.MustParsePrefix("::1/128")},
		{"Edinburgh cell", NewCell("GB", "GB-SCT", "gcvwr"), map[netip.Addr]bool{a("127.0.0.4"): true}, netip.MustParsePrefix("::1/128")},
		{"England outside London", NewCell("GB", "GB-ENG", "gcn8"), map[netip.Addr]bool{a("127.0.0.2"): true, a("127.0.0.3"): true}, netip.MustParsePrefix("::1/128")},
		{"Wales", NewCell("GB", "GB-WLS", "gcj"), gbPool, netip.MustParsePrefix("::1/128")},
		{"Paris", NewCell("FR", "FR-IDF", "u09tv"), map[netip.Addr]bool{a("127.0.0.6"): true}, netip.MustParsePrefix("2001:db8:1::/64")},
		{"Germany", NewCell("DE", "", "u33d"), map[netip.Addr]bool{a("127.0.0.7"): true}, netip.Prefix{}},
		{"unknown", Cell{}, map[netip.Addr]bool{a("127.0.0.7"): true}, netip.Prefix{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := s.Select(tc.cell)
			if !tc.in[src.IPv4] {
				t.Errorf("IPv4 %s, want one of %v", src.IPv4, tc.in)
			}
			if tc.v6.IsValid() != src.IPv6.IsValid() || tc.v6.IsValid() && !tc.v6.Contains(src.IPv6) {
				t.Errorf("IPv6 %s, want one in %s", src.IPv6, tc.v6)
			}
			if src.FreeBind != (tc.v6.IsValid() && tc.v6.Bits() < 128) {
				t.Errorf("FreeBind %v for %s", src.FreeBind, src.IPv6)
			}
		})
	}
}

func TestSelectIPv6Host(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := testSelector(t, "2001:db8:1::/64,FR,,,,u09t\n2001:db8:2::/120,FR,,,,u0\n", Config{Now: func() time.Time { return now }})
	paris, other := NewCell("FR", "", "u09t"), NewCell("FR", "", "u09w")
	p1 := s.Select(paris).IPv6
	if !netip.MustParsePrefix("2001:db8:1::/64").Contains(p1) || p1 == netip.MustParseAddr("2001:db8:1::") {
		t.Fatalf("Paris: %s", p1)
	}
	if s.Select(paris).IPv6 != p1 {
		t.Error("same cell and epoch, different address")
	}
	if got := s.Select(other).IPv6; !netip.MustParsePrefix("2001:db8:2::/120").Contains(got) {
		t.Errorf("u09w: %s, want one in 2001:db8:2::/120", got)
	}
	if got := s.Select(NewCell("FR", "", "u09tw")).IPv6; got != p1 {
		t.Errorf("a finer place in the same cell: %s, want %s", got, p1)
	}
	now = now.Add(24 * time.Hour)
	if got := s.Select(paris).IPv6; got == p1 || !netip.MustParsePrefix("2001:db8:1::/64").Contains(got) {
		t.Errorf("next epoch: %s (was %s)", got, p1)
	}
}

func TestSelectNoAllocs(t *testing.T) {
	s := testSelector(t, testFeed+poolFeed(16), Config{})
	c := NewCell("FR", "FR-IDF", "u09tvw")
	if n := testing.AllocsPerRun(100, func() { s.Select(c) }); n != 0 {
		t.Errorf("Select allocates %v times", n)
	}
}

func TestNewSelectorErrors(t *testing.T) {
	es := []Entry{{Prefix: netip.MustParsePrefix("127.0.0.2/32")}}
	for _, c := range []Config{
		{Entries: es, Key: []byte("short")},
		{Key: testKey},
		{Entries: es, Key: testKey, Precision: 13},
		{Entries: es, Key: testKey, Epoch: -time.Second},
	} {
		if _, err := NewSelector(c); err == nil {
			t.Errorf("NewSelector(%+v) succeeded", c)
		}
	}
}

func BenchmarkSelect(b *testing.B) {
	s := testSelector(b, testFeed+poolFeed(16), Config{})
	c := NewCell("GB", "GB-ENG", "gcpvj")
	b.ReportAllocs()
	for b.Loop() {
		s.Select(c)
	}
}

// TestSelectCounted: each Select counts one selection per family under the
// pool level that answered, and no label names a place.
func TestSelectCounted(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := testSelector(t, testFeed, Config{Registerer: reg})
	s.Select(NewCell("GB", "GB-ENG", "gcpvj0")) // London's cell pool
	s.Select(NewCell("GB", "GB-WLS", "gcj"))    // GB's country pool
	s.Select(Cell{})                            // the default pool; no IPv6 there
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"family", "ipv4", "pool", "geohash"}, 1},
		{[]string{"family", "ipv4", "pool", "country"}, 1},
		{[]string{"family", "ipv4", "pool", "default"}, 1},
		{[]string{"family", "ipv4"}, 3},
		{[]string{"family", "ipv6"}, 3},
		{[]string{"family", "ipv6", "pool", "none"}, 1},
	} {
		if got := testnet.Metric(t, reg, "masqued_egress_selections_total", tc.labels...); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.labels, got, tc.want)
		}
	}
}
