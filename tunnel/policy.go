package tunnel

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/masqued/masqued/masque"
)

// Policy decides which resolved addresses a tunnel may reach. It is applied to
// every address after DNS resolution, so a name that resolves to a private
// address is refused like the literal (no DNS-rebinding bypass).
//
// The zero Policy is safe: it refuses loopback, private, link-local,
// unspecified, multicast and other special-purpose ranges, including their
// IPv4-mapped, IPv4-translated, IPv4-compatible and NAT64 forms.
// A Policy is immutable once in use and safe for concurrent use.
type Policy struct {
	// AllowPrivate opts in to special-purpose targets (the masqued flag
	// -allow-private-targets). Tests on loopback need it.
	AllowPrivate bool

	// Self lists the proxy's own addresses. Without AllowPrivate, tunnels to
	// them are refused. Whatever AllowPrivate says, tunnels to the proxy's own
	// listening sockets (SelfPorts) are refused, so the proxy cannot be made
	// to loop into itself.
	Self      []netip.Addr
	SelfPorts []netip.AddrPort

	// RelayTo, when set, makes the proxy the ingress relay of a two-hop
	// chain (the masqued flag -relay-to): it tunnels only to these egress
	// proxies and refuses every other target. A target matches an entry by
	// its host (names case-insensitively, addresses in any spelling) and
	// port as the request gives them, before resolution; its addresses may
	// then be private, since the operator named the egress, but never the
	// proxy's own listening sockets.
	RelayTo []masque.Target
}

// specialPrefixes are the ranges no tunnel may reach by default (RFC 6890 and
// its IANA registries): not globally reachable, or reaching the proxy's own
// network.
var specialPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // shared address space (CGNAT)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		"::/128",          // unspecified
		"::1/128",         // loopback
		"::/96",           // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",  // local-use IPv4/IPv6 translation
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, …)
		"2001:db8::/32",   // documentation
		"fc00::/7",        // unique local
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
		"::ffff:0:0:0/96", // IPv4-translated (SIIT)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// Check returns nil if a tunnel may reach ap, or a 403
// destination_ip_prohibited *Error.
func (p *Policy) Check(ap netip.AddrPort) error {
	return p.check(ap, p.AllowPrivate)
}

// CheckTarget refuses, with a 403 destination_ip_prohibited *Error, a target
// that a relay (RelayTo) does not serve; it reports whether t is one of
// RelayTo's egress proxies, whose addresses need only pass CheckRelayed.
func (p *Policy) CheckTarget(t masque.Target) (relayed bool, err error) {
	if len(p.RelayTo) == 0 {
		return false, nil
	}
	for _, e := range p.RelayTo {
		if e.Port == t.Port && sameHost(e.Host, t.Host) {
			return true, nil
		}
	}
	return false, prohibited(masque.RelayRefusal)
}

// CheckRelayed is Check for the addresses of a target CheckTarget found in
// RelayTo: only the proxy's own listening sockets are refused.
func (p *Policy) CheckRelayed(ap netip.AddrPort) error { return p.check(ap, true) }

func sameHost(a, b string) bool {
	if x, err := netip.ParseAddr(a); err == nil {
		y, err := netip.ParseAddr(b)
		return err == nil && x.Unmap() == y.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

func (p *Policy) check(ap netip.AddrPort, allowPrivate bool) error {
	a := ap.Addr().WithZone("")
	for _, s := range p.SelfPorts {
		if s.Port() == ap.Port() && (s.Addr().Unmap() == a.Unmap() || s.Addr().IsUnspecified()) {
			return prohibited("target is the proxy itself")
		}
	}
	if allowPrivate {
		return nil
	}
	if isSpecial(a) {
		return prohibited("target address is loopback, private, link-local or otherwise special-purpose")
	}
	for _, s := range p.Self {
		if s.Unmap() == a.Unmap() {
			return prohibited("target is one of the proxy's own addresses")
		}
	}
	return nil
}

func isSpecial(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.Unmap() // ::ffff:a.b.c.d is a.b.c.d
	if a.Is6() {
		b := a.As16()
		var embedded netip.Addr
		switch {
		case nat64Prefix.Contains(a): // 64:ff9b::a.b.c.d reaches a.b.c.d
			embedded = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a): // 2002:aabb:ccdd::/48 tunnels to a.b.c.d
			embedded = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if embedded.IsValid() && isSpecial(embedded) {
			return true
		}
	}
	for _, pr := range specialPrefixes {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

func prohibited(details string) *masque.Error {
	return &masque.Error{HTTPStatus: http.StatusForbidden, Kind: masque.StatusIPProhibited, Details: details}
}

// LocalAddrs returns the addresses of this host's interfaces, for Policy.Self.
func LocalAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ia := range ifAddrs {
		if pn, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(pn.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, nil
}
