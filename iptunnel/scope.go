package iptunnel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/yosida95/uritemplate/v3"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/connectip"
)

// DefaultTemplate is the CONNECT-IP URI template of RFC 9484 §3.
const DefaultTemplate = "https://{proxy}/.well-known/masque/ip/{target}/{ipproto}/"

// Template is a CONNECT-IP URI template (RFC 9484 §3). Its target and
// ipproto variables are optional: a template without them serves unscoped
// requests only. A Template is immutable and safe for concurrent use.
type Template struct {
	raw  string
	path *uritemplate.Template
}

// ParseTemplate parses and checks a CONNECT-IP URI template: https, an
// authority (a host[:port] or {proxy}), a path starting with "/".
func ParseTemplate(s string) (*Template, error) {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		return nil, errors.New("ip template: scheme must be https")
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return nil, errors.New("ip template: needs an authority and a path starting with /")
	}
	if authority := rest[:i]; strings.ContainsAny(authority, "{}") && authority != "{proxy}" {
		return nil, errors.New("ip template: the authority may only be a host[:port] or {proxy}")
	}
	pt, err := uritemplate.New(rest[i:])
	if err != nil {
		return nil, fmt.Errorf("ip template: %w", err)
	}
	return &Template{raw: s, path: pt}, nil
}

// String returns the template as parsed.
func (t *Template) String() string { return t.raw }

// Scope is what a request may reach (RFC 9484 §4.6): its target (a prefix or
// the addresses of a name; none: anywhere) and IP protocol (0: any; ICMP is
// always allowed).
type Scope struct {
	Target   string         // as requested, "*" if unscoped
	Prefixes []netip.Prefix // nil: any destination
	Proto    uint8
}

// allows reports whether a packet to dst of protocol proto is in scope.
func (s *Scope) allows(dst netip.Addr, proto uint8) bool {
	if s.Proto != 0 && proto != s.Proto && proto != protoICMP && proto != protoICMPv6 {
		return false
	}
	if s.Prefixes == nil {
		return true
	}
	for _, p := range s.Prefixes {
		if p.Contains(dst) {
			return true
		}
	}
	return false
}

// Resolver resolves a scoped request's target name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// vars matches requestURI against the template, nil if it does not fit. A
// literal "*" (the wildcard, RFC 9484 §4.6, as clients such as
// connect-ip-go send it unencoded) matches as its encoding %2A would.
func (t *Template) vars(requestURI string) uritemplate.Values {
	return t.path.Match(strings.ReplaceAll(requestURI, "*", "%2A"))
}

// match extracts the scope of a request for requestURI (path and query). A
// target name is resolved with r. Errors are 400s (masque.Error), or the
// resolver's.
func (t *Template) match(ctx context.Context, requestURI string, r Resolver) (Scope, error) {
	v := t.vars(requestURI)
	if v == nil {
		return Scope{}, masque.BadRequest("request path does not match the CONNECT-IP template", nil)
	}
	s := Scope{Target: "*"}
	if pv := v.Get("ipproto"); pv.Valid() && pv.String() != "*" {
		n, err := strconv.ParseUint(pv.String(), 10, 8)
		if err != nil {
			return Scope{}, masque.BadRequest("ipproto is not a number from 0 to 255 or *", nil)
		}
		s.Proto = uint8(n)
	}
	tv := v.Get("target")
	if !tv.Valid() || tv.String() == "*" {
		return s, nil
	}
	target := tv.String()
	if target == "" {
		return Scope{}, masque.BadRequest("target is not a valid prefix or name", nil)
	}
	s.Target = target
	if strings.ContainsRune(target, '/') {
		p, err := netip.ParsePrefix(target)
		if err != nil || p != p.Masked() || p.Addr().Zone() != "" {
			return Scope{}, masque.BadRequest("target prefix is invalid or has host bits set", nil)
		}
		s.Prefixes = []netip.Prefix{p}
		return s, nil
	}
	if a, err := netip.ParseAddr(target); err == nil {
		if a.Zone() != "" {
			return Scope{}, masque.BadRequest("target has a zone", nil)
		}
		s.Prefixes = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		return s, nil
	}
	if _, err := masque.NewTarget(target, "1"); err != nil {
		return Scope{}, masque.BadRequest("target is not a valid prefix or name", nil)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", target)
	if err != nil {
		return Scope{}, err
	}
	for _, a := range addrs {
		a = a.Unmap()
		s.Prefixes = append(s.Prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(s.Prefixes) == 0 {
		return Scope{}, &masque.Error{HTTPStatus: 502, Kind: masque.StatusDestinationNotFound, Details: "name has no addresses"}
	}
	return s, nil
}

// routes returns the ROUTE_ADVERTISEMENT ranges for the scope, in the order
// RFC 9484 §4.7.3 requires, for the families the tunnel has addresses of.
func (s *Scope) routes(v4, v6 bool) []connectip.Range {
	var out []connectip.Range
	prefixes := s.Prefixes
	if prefixes == nil {
		prefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	for _, fam4 := range []bool{true, false} {
		if (fam4 && !v4) || (!fam4 && !v6) {
			continue
		}
		var rs []connectip.Range
		for _, p := range prefixes {
			if p.Addr().Is4() == fam4 {
				rs = append(rs, connectip.PrefixRange(p, s.Proto))
			}
		}
		out = append(out, sortRanges(rs)...)
	}
	return out
}

// sortRanges sorts same-family ranges by start and merges overlapping ones,
// as §4.7.3 requires of a ROUTE_ADVERTISEMENT, returning the result.
func sortRanges(rs []connectip.Range) []connectip.Range {
	slices.SortFunc(rs, func(a, b connectip.Range) int { return a.Start.Compare(b.Start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && !out[n-1].End.Less(r.Start) {
			if out[n-1].End.Less(r.End) {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
