package main

import (
	"errors"
	"flag"
	"net/netip"
	"strings"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/iptunnel"
)

// ipFlags are the CONNECT-IP (RFC 9484) flags; -ip-pools turns it on.
type ipFlags struct {
	pools, template, device string
	mtu                     int
}

func (f *ipFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.pools, "ip-pools", "", "CONNECT-IP: comma-separated IPv4 and IPv6 `prefixes` whose addresses tunnels get (the first of each is the TUN device's); none = CONNECT-IP off. Needs CAP_NET_ADMIN and IP forwarding")
	fs.StringVar(&f.template, "ip-template", iptunnel.DefaultTemplate, "CONNECT-IP URI `template` (RFC 9484 §3)")
	fs.StringVar(&f.device, "ip-device", "masqued-ip", "CONNECT-IP: `name` of the TUN device masqued makes")
	fs.IntVar(&f.mtu, "ip-mtu", 1280, "CONNECT-IP: the TUN device's MTU, in `bytes` (at least 1280)")
}

// parse checks the flags' values; it touches nothing.
func (f *ipFlags) parse() (*iptunnel.Template, []netip.Prefix, error) {
	t, err := iptunnel.ParseTemplate(f.template)
	if err != nil {
		return nil, nil, cli.FlagErrorf("ip-template", "%q: %w", f.template, err)
	}
	if f.mtu < 1280 || f.mtu > 65535 {
		return nil, nil, cli.FlagErrorf("ip-mtu", "must be between 1280 and 65535, not %d", f.mtu)
	}
	var pools []netip.Prefix
	for s := range strings.SplitSeq(f.pools, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, cli.FlagErrorf("ip-pools", "%q: %w", s, err)
		}
		pools = append(pools, p.Masked())
	}
	return t, pools, nil
}

// server starts CONNECT-IP if -ip-pools asks for it (nil if not).
func (f *ipFlags) server(s *setup) (*iptunnel.Server, error) {
	t, pools, err := f.parse()
	if err != nil || len(pools) == 0 {
		return nil, err
	}
	c := iptunnel.Config{Template: t, Pools: pools, Device: f.device, MTU: f.mtu, Registerer: s.registry, Logger: s.logger}
	if e, ok := s.dialer.(iptunnel.EgressSelector); ok {
		c.Egress = e
	}
	if r, ok := s.resolver.(iptunnel.Resolver); ok {
		c.Resolver = r
	}
	ip, err := iptunnel.New(c)
	if err != nil {
		return nil, errors.New("-ip-pools: " + err.Error())
	}
	return ip, nil
}
