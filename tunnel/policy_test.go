package tunnel_test

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// These addresses are values in a table: nothing is sent to them.

// specialAddrs must be refused unless the policy allows private targets.
var specialAddrs = []struct{ name, addr string }{
	{"v4 loopback", "127.0.0.1"},
	{"v4 loopback range", "127.255.0.9"},
	{"10/8", "10.0.0.1"},
	{"172.16/12", "172.16.5.4"},
	{"192.168/16", "192.168.1.1"},
	{"cloud metadata", "169.254.169.254"},
	{"CGNAT", "100.64.0.1"},
	{"this network", "0.0.0.0"},
	{"v4 multicast", "224.0.0.1"},
	{"broadcast", "255.255.255.255"},
	{"v4 documentation", "192.0.2.1"},
	{"benchmarking", "198.18.0.1"},
	{"v6 loopback", "::1"},
	{"v6 unspecified", "::"},
	{"v6 link-local", "fe80::1"},
	{"unique local", "fc00::1"},
	{"unique local fd", "fd12:3456::1"},
	{"v6 multicast", "ff02::1"},
	{"v6 documentation", "2001:db8::1"},
	{"site-local", "fec0::1"},
	{"v4-mapped loopback", "::ffff:127.0.0.1"},
	{"v4-mapped private", "::ffff:10.0.0.1"},
	{"v4-mapped metadata", "::ffff:169.254.169.254"},
	{"NAT64 of loopback", "64:ff9b::7f00:1"},
	{"NAT64 of private", "64:ff9b::a00:1"},
	{"local-use NAT64", "64:ff9b:1::808:808"},
	{"6to4 of loopback", "2002:7f00:1::"},
	{"6to4 of metadata", "2002:a9fe:a9fe::1"},
	{"v4-compatible loopback", "::127.0.0.1"},
	{"v4-compatible public", "::8.8.8.8"},
	{"v4-translated loopback", "::ffff:0:7f00:1"},
	{"Teredo", "2001::1"},
	{"discard-only", "100::1"},
}

// publicAddrs are reachable by default.
var publicAddrs = []struct{ name, addr string }{
	{"v4 public", "1.1.1.1"},
	{"v4 public 2", "8.8.8.8"},
	{"v6 public", "2606:4700::1111"},
	{"v4-mapped public", "::ffff:1.1.1.1"},
	{"NAT64 of public", "64:ff9b::808:808"},
	{"6to4 of public", "2002:808:808::"},
	{"v6 public 2", "2a00:1450:4001::1"},
}

func wantProhibited(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, http.StatusForbidden, masque.StatusIPProhibited)
}

func TestPolicyCheck(t *testing.T) {
	var zero tunnel.Policy
	private := tunnel.Policy{AllowPrivate: true}
	for _, tt := range specialAddrs {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443)
			wantProhibited(t, zero.Check(ap))
			if err := private.Check(ap); err != nil {
				t.Fatalf("AllowPrivate: %v", err)
			}
		})
	}
	for _, tt := range publicAddrs {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443)
			if err := zero.Check(ap); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
	t.Run("zone is ignored", func(t *testing.T) {
		wantProhibited(t, zero.Check(netip.MustParseAddrPort("[fe80::1%eth0]:443")))
	})
	t.Run("invalid address", func(t *testing.T) {
		wantProhibited(t, zero.Check(netip.AddrPort{}))
	})
}

func TestPolicySelf(t *testing.T) {
	p := tunnel.Policy{Self: []netip.Addr{netip.MustParseAddr("8.8.4.4"), netip.MustParseAddr("2606:4700::6810:1")}}
	for _, s := range []string{"8.8.4.4:443", "[::ffff:8.8.4.4]:80", "[2606:4700::6810:1]:443"} {
		t.Run(s, func(t *testing.T) { wantProhibited(t, p.Check(netip.MustParseAddrPort(s))) })
	}
	if err := p.Check(netip.MustParseAddrPort("8.8.8.8:443")); err != nil {
		t.Fatalf("an address not in Self: %v", err)
	}
	p.AllowPrivate = true
	if err := p.Check(netip.MustParseAddrPort("8.8.4.4:443")); err != nil {
		t.Fatalf("Self with AllowPrivate: %v", err)
	}
}

func TestPolicySelfPorts(t *testing.T) {
	p := tunnel.Policy{
		AllowPrivate: true,
		SelfPorts: []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:4433"), // one address
			netip.MustParseAddrPort("0.0.0.0:8443"),   // every address
			netip.MustParseAddrPort("[::]:9443"),      // every address
			netip.MustParseAddrPort("[::1]:443"),
		},
	}
	tests := []struct {
		ap      string
		refused bool
	}{
		{"127.0.0.1:4433", true},
		{"[::ffff:127.0.0.1]:4433", true},
		{"127.0.0.2:4433", false},
		{"127.0.0.1:4434", false},
		{"127.0.0.1:8443", true},
		{"10.0.0.1:8443", true},
		{"[::1]:8443", true},
		{"1.1.1.1:9443", true},
		{"[::1]:443", true},
		{"127.0.0.1:443", false},
		{"[::1]:444", false},
		{"10.0.0.1:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.ap, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.ap)
			err := p.Check(ap)
			if tt.refused {
				wantProhibited(t, err)
			} else if err != nil {
				t.Fatalf("refused: %v", err)
			}
			// Without AllowPrivate the proxy's own sockets stay refused.
			if strict := (tunnel.Policy{SelfPorts: p.SelfPorts}); tt.refused {
				wantProhibited(t, strict.Check(ap))
			}
		})
	}
}

func TestPolicyErrorIsTunnelError(t *testing.T) {
	var zero tunnel.Policy
	var te *masque.Error
	if err := zero.Check(netip.MustParseAddrPort("127.0.0.1:80")); !errors.As(err, &te) || te.Details == "" {
		t.Fatalf("Check = %v, want a *masque.Error with details", err)
	}
}

// TestPolicyRelayTo: a relay tunnels to its listed egress proxies, by the
// name or address the request gives, private or not, and to nothing else.
func TestPolicyRelayTo(t *testing.T) {
	p := tunnel.Policy{
		RelayTo: []masque.Target{
			{Host: "egress.example", Port: 443},
			{Host: "10.1.2.3", Port: 4433},
			{Host: "2001:db8::7", Port: 443},
		},
		SelfPorts: []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:443")},
	}
	for _, tt := range []struct {
		target  masque.Target
		relayed bool
	}{
		{masque.Target{Host: "egress.example", Port: 443}, true},
		{masque.Target{Host: "EGRESS.example.", Port: 443}, true},
		{masque.Target{Host: "10.1.2.3", Port: 4433}, true},
		{masque.Target{Host: "2001:DB8:0::7", Port: 443}, true},
		{masque.Target{Host: "egress.example", Port: 80}, false},
		{masque.Target{Host: "10.1.2.3", Port: 443}, false},
		{masque.Target{Host: "origin.example", Port: 443}, false},
		{masque.Target{Host: "1.1.1.1", Port: 443}, false},
		{masque.Target{Host: "egress.example.evil", Port: 443}, false},
	} {
		t.Run(tt.target.String(), func(t *testing.T) {
			relayed, err := p.CheckTarget(tt.target)
			if relayed != tt.relayed {
				t.Fatalf("relayed %v, want %v", relayed, tt.relayed)
			}
			if !tt.relayed {
				wantProhibited(t, err)
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
	// A listed egress may resolve to private addresses, never to the
	// relay's own sockets.
	if err := p.CheckRelayed(netip.MustParseAddrPort("10.1.2.3:4433")); err != nil {
		t.Errorf("private egress: %v", err)
	}
	wantProhibited(t, p.CheckRelayed(netip.MustParseAddrPort("10.1.2.3:443")))
	// Without RelayTo every target passes CheckTarget, for Check to judge.
	var zero tunnel.Policy
	if relayed, err := zero.CheckTarget(masque.Target{Host: "1.1.1.1", Port: 443}); relayed || err != nil {
		t.Errorf("no relay: %v, %v", relayed, err)
	}
}
