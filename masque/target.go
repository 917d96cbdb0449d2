package masque

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/yosida95/uritemplate/v3"
)

// DefaultUDPTemplate is the CONNECT-UDP URI template of RFC 9298 §2 under the
// well-known path. {proxy} stands for the proxy's own authority.
const DefaultUDPTemplate = "https://{proxy}/.well-known/masque/udp/{target_host}/{target_port}/"

// Target is where a tunnel goes: a DNS name or an IP literal (without
// brackets), and a port in 1..65535.
type Target struct {
	Host string
	Port uint16
}

// String returns host:port, with brackets around IPv6 literals.
func (t Target) String() string { return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))) }

// Addr returns the target's IP address if Host is a literal.
func (t Target) Addr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(t.Host)
	return a, err == nil && a.Zone() == ""
}

// ParseAuthority parses the host:port authority of a CONNECT request
// (RFC 9110 §9.3.6).
func ParseAuthority(s string) (Target, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, BadRequest("CONNECT authority must be host:port", err)
	}
	if strings.HasPrefix(s, "[") != strings.Contains(host, ":") {
		return Target{}, BadRequest("IPv6 literals must be bracketed, others must not", nil)
	}
	return NewTarget(host, port)
}

// NewTarget validates a host and a decimal port.
func NewTarget(host, port string) (Target, error) {
	p, err := parsePort(port)
	if err != nil {
		return Target{}, err
	}
	if err := checkHost(host); err != nil {
		return Target{}, err
	}
	return Target{Host: strings.ToLower(host), Port: p}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, BadRequest("target port must be a decimal number in 1..65535", nil)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, BadRequest("target port must be a decimal number in 1..65535", nil)
	}
	return uint16(n), nil
}

// checkHost accepts an IP literal without zone or a DNS name of letters,
// digits, hyphens and underscores in labels of 1..63 bytes, 253 bytes at most.
func checkHost(h string) error {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return BadRequest("target IPv6 zones are not allowed", nil)
		}
		return nil
	}
	bad := BadRequest("target host is neither an IP address nor a DNS name", nil)
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return bad
	}
	allDigits := true
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad
			}
			if c < '0' || c > '9' {
				allDigits = false
			}
		}
	}
	if allDigits { // "1.2.3" or "010.0.0.1": not a name, and not an address we accept
		return bad
	}
	return nil
}

// Template is a CONNECT-UDP URI template (RFC 9298 §2) with the variables
// target_host and target_port.
//
// A Template is immutable and safe for concurrent use.
type Template struct {
	raw       string
	authority string                // authority part; may contain {proxy}
	path      *uritemplate.Template // path and query part, matched on requests
}

// ParseTemplate parses and validates a URI template. It must use the https
// scheme, have a path that starts with "/", and contain both target_host and
// target_port exactly in its path or query.
func ParseTemplate(s string) (*Template, error) {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		return nil, errors.New("udp template: scheme must be https")
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return nil, errors.New("udp template: needs an authority and a path starting with /")
	}
	authority, path := rest[:i], rest[i:]
	if strings.ContainsAny(authority, "{}") && authority != "{proxy}" {
		return nil, errors.New("udp template: the authority may only be a host[:port] or {proxy}")
	}
	pt, err := uritemplate.New(path)
	if err != nil {
		return nil, fmt.Errorf("udp template: %w", err)
	}
	var host, port bool
	for _, v := range pt.Varnames() {
		switch v {
		case "target_host":
			host = true
		case "target_port":
			port = true
		}
	}
	if !host || !port {
		return nil, errors.New("udp template: must contain {target_host} and {target_port}")
	}
	return &Template{raw: s, authority: authority, path: pt}, nil
}

// String returns the template as it was parsed.
func (t *Template) String() string { return t.raw }

// Match extracts the target from a request's path and query (its RequestURI).
// It fails with a 400 error when the URI does not fit the template or the
// target is invalid.
func (t *Template) Match(requestURI string) (Target, error) {
	v := t.path.Match(requestURI)
	if v == nil {
		return Target{}, BadRequest("request path does not match the CONNECT-UDP template", nil)
	}
	return NewTarget(v.Get("target_host").String(), v.Get("target_port").String())
}

// Expand returns the URL a client requests to reach target through the proxy
// at proxyAuthority (used where the template says {proxy}).
func (t *Template) Expand(proxyAuthority string, target Target) (*url.URL, error) {
	p, err := t.path.Expand(uritemplate.Values{
		"target_host": uritemplate.String(target.Host),
		"target_port": uritemplate.String(strconv.Itoa(int(target.Port))),
	})
	if err != nil {
		return nil, fmt.Errorf("expanding udp template: %w", err)
	}
	authority := t.authority
	if authority == "{proxy}" {
		authority = proxyAuthority
	}
	return url.Parse("https://" + authority + p)
}
