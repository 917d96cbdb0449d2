package proxyconn

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"

	"github.com/masqued/masqued/masque"
)

// Authority returns the host:port of a proxy URL ("https://host[:port]"),
// port 443 if none is given.
func Authority(proxyURL string) (string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("proxy URL must be https://host[:port], not %q", proxyURL)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// ParseTemplate parses a CONNECT-UDP URI template; "" is
// masque.DefaultUDPTemplate.
func ParseTemplate(text string) (*masque.Template, error) {
	if text == "" {
		text = masque.DefaultUDPTemplate
	}
	return masque.ParseTemplate(text)
}

// ExpandUDP returns the CONNECT-UDP request URL for target ("host:port") at
// the proxy authority.
func ExpandUDP(tmpl *masque.Template, authority, target string) (*url.URL, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("udp target: %w", err)
	}
	t, err := masque.NewTarget(host, port)
	if err != nil {
		return nil, fmt.Errorf("udp target: %w", err)
	}
	return tmpl.Expand(authority, t)
}

// CheckTCPTarget validates a CONNECT target ("host:port") before it goes
// into a request line.
func CheckTCPTarget(target string) error {
	if _, err := masque.ParseAuthority(target); err != nil {
		return fmt.Errorf("tcp target: %w", err)
	}
	return nil
}

// AddrOf returns target as a net.Addr: a *net.TCPAddr or *net.UDPAddr for IP
// literals, an Addr naming the target otherwise.
func AddrOf(target, network string) net.Addr {
	if ap, err := netip.ParseAddrPort(target); err == nil {
		if network == "udp" {
			return net.UDPAddrFromAddrPort(ap)
		}
		return net.TCPAddrFromAddrPort(ap)
	}
	return Addr{Net: network, Target: target}
}

// Addr is a tunnel's target by name, as the client asked for it.
type Addr struct{ Net, Target string }

func (a Addr) Network() string { return a.Net }
func (a Addr) String() string  { return a.Target }

// Proxy is what a client needs to know of the proxy before it dials: where
// it is, its CONNECT-UDP template, and the TLS configuration to verify it.
type Proxy struct {
	Authority string // host:port
	Template  *masque.Template
	TLS       *tls.Config // a copy of the caller's, with ServerName and NextProtos set
}

// NewProxy parses proxyURL ("https://host[:port]") and template ("" for the
// default) and prepares a copy of tlsConf (nil for the defaults) with the
// proxy's name and nextProtos.
func NewProxy(proxyURL, template string, tlsConf *tls.Config, nextProtos ...string) (*Proxy, error) {
	authority, err := Authority(proxyURL)
	if err != nil {
		return nil, err
	}
	tmpl, err := ParseTemplate(template)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{}
	if tlsConf != nil {
		c = tlsConf.Clone()
	}
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(authority)
	}
	c.NextProtos = nextProtos
	return &Proxy{Authority: authority, Template: tmpl, TLS: c}, nil
}
