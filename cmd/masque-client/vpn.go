package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/yosida95/uritemplate/v3"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/cmd/masque-client/internal/vpn"
	"github.com/masqued/masqued/internal/cli"
)

// vpnFlags are the vpn command's flags.
type vpnFlags struct {
	on       bool // the command is vpn
	routes   string
	device   string
	template string
}

func (v *vpnFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.routes, "routes", "", "vpn: comma-separated `prefixes` to route through the tunnel; none = what the proxy advertises\n(a default route as two halves)")
	fs.StringVar(&v.device, "tun", "masque0", "vpn: `name` of the TUN device to make")
	fs.StringVar(&v.template, "ip-template", "https://{proxy}/.well-known/masque/ip/{target}/{ipproto}/", "vpn: the proxy's CONNECT-IP URI `template` (RFC 9484 §3); the tunnel is unscoped (target and ipproto *)")
}

// path expands the template's path and query for an unscoped tunnel.
func (v *vpnFlags) path() (string, error) {
	rest, ok := strings.CutPrefix(v.template, "https://")
	i := strings.IndexByte(rest, '/')
	if !ok || i <= 0 {
		return "", fmt.Errorf("%q: want https://AUTHORITY/PATH", v.template)
	}
	t, err := uritemplate.New(rest[i:])
	if err != nil {
		return "", err
	}
	return t.Expand(uritemplate.Values{"target": uritemplate.String("*"), "ipproto": uritemplate.String("*")})
}

// check checks vpn's arguments; parseFlags calls it for the vpn command.
func (v *vpnFlags) check(fs *flag.FlagSet, o *options) error {
	switch {
	case fs.NArg() != 0:
		return cli.Usagef(fs, "vpn takes no arguments, only -routes and -tun")
	case o.proxy == "":
		return cli.Usagef(fs, "-proxy is required")
	case len(o.hops) != 1:
		return cli.Usagef(fs, "vpn takes one proxy, not a chain")
	case o.transport == client.HTTP1:
		return cli.Usagef(fs, "vpn runs over HTTP/3 or HTTP/2, not HTTP/1.1")
	}
	if _, err := v.prefixes(); err != nil {
		return cli.Usagef(fs, "-routes: %v", err)
	}
	if _, err := v.path(); err != nil {
		return cli.Usagef(fs, "-ip-template: %v", err)
	}
	return nil
}

func (v *vpnFlags) prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(v.routes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// runVPN brings up a device-wide tunnel through the proxy (CONNECT-IP,
// RFC 9484) until SIGINT or SIGTERM, or until the proxy goes away. The line
// saying the device is up ("vpn: DEVICE up over …") goes to stdout, for
// scripts; the rest to stderr.
func runVPN(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	routes, _ := o.vpn.prefixes()
	path, _ := o.vpn.path()
	h := o.hops[0]
	return vpn.Run(ctx, vpn.Config{
		Proxy: h.url, TLSConfig: h.tls, Transport: string(o.transport), Authorizer: h.authorizer, Header: o.header(),
		Path: path, Device: o.vpn.device, Routes: routes,
		Logf: func(format string, a ...any) {
			w := stderr
			if strings.HasPrefix(format, "vpn: ") {
				w = stdout
			}
			fmt.Fprintf(w, format+"\n", a...)
		},
	})
}
