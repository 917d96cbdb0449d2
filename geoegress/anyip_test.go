package geoegress_test

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// inNetns marks the test process that TestAnyIPv6 starts in a network
// namespace of its own.
const inNetns = "MASQUED_TEST_IN_NETNS"

// TestAnyIPv6 leaves from addresses derived from a /64 that is routed to the
// host but configured nowhere (AnyIP: ip -6 route add local PREFIX dev lo),
// which takes IPV6_FREEBIND. Routes are the host's business, so the test
// re-runs itself in a user and network namespace of its own (unshare -rn),
// where it may add one and where every packet stays; it is skipped where
// such namespaces are not permitted.
func TestAnyIPv6(t *testing.T) {
	if os.Getenv(inNetns) == "" {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skipf("no ip command (iproute2) to route a prefix: %v", err)
		}
		if err := exec.Command("unshare", "-rn", "true").Run(); err != nil {
			t.Skipf("no network namespace for this test (unshare -rn: %v)", err)
		}
		cmd := exec.Command("unshare", "-rn", os.Args[0], "-test.run=^TestAnyIPv6$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inNetns+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("the test in a network namespace failed: %v", err)
		}
		return
	}
	const prefix = "2001:db8:1::/64" // documentation prefix, here only in this namespace
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"-6", "route", "add", "local", prefix, "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	es, err := geoegress.ParseFeed(strings.NewReader(prefix + ",GB,,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := geoegress.NewSelector(geoegress.Config{Entries: es, Key: []byte("anyip test key, 16+ bytes")})
	if err != nil {
		t.Fatal(err)
	}
	origin := testnet.WhoAmI(t, testnet.IPv6)
	ctx := testnet.Context(t, 10*time.Second)
	var d tunnel.NetDialer
	seen := map[netip.Addr]bool{}
	for _, gh := range []string{"gcpv", "gcvw", "gcpu"} {
		src := s.Select(geoegress.NewCell("GB", "", gh))
		if !src.FreeBind || !netip.MustParsePrefix(prefix).Contains(src.IPv6) {
			t.Fatalf("cell %s: source %+v", gh, src)
		}
		for range 2 {
			c, err := d.DialFrom(ctx, "tcp", []netip.AddrPort{origin.AddrPort()}, src)
			if err != nil {
				t.Fatal(err)
			}
			from := testnet.ReadWhoAmI(t, c).Addr()
			c.Close()
			if from != src.IPv6 {
				t.Fatalf("cell %s: origin saw %s, want %s", gh, from, src.IPv6)
			}
		}
		seen[src.IPv6] = true
		t.Logf("cell %s left from %s", gh, src.IPv6)
	}
	if len(seen) != 3 {
		t.Errorf("three cells left from %d addresses", len(seen))
	}
	// Without IPV6_FREEBIND the kernel will not bind an address it does not
	// have: the option is what makes the prefix usable.
	src := s.Select(geoegress.NewCell("GB", "", "gcpv"))
	src.FreeBind = false
	if c, err := d.DialFrom(ctx, "tcp", []netip.AddrPort{origin.AddrPort()}, src); err == nil {
		c.Close()
		t.Error("bound an AnyIP address without IPV6_FREEBIND")
	}
}
