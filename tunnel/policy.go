package tunnel

import (
	"net"
	"net/http"
	"net/netip"

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
	a := ap.Addr().WithZone("")
	for _, s := range p.SelfPorts {
		if s.Port() == ap.Port() && (s.Addr().Unmap() == a.Unmap() || s.Addr().IsUnspecified()) {
			return prohibited("target is the proxy itself")
		}
	}
	if p.AllowPrivate {
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
