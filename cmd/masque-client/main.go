// Command masque-client fetches a URL through a MASQUE proxy, like curl with
// a proxy: HTTP/3 inside a CONNECT-UDP tunnel (-via udp), or HTTP/2 or
// HTTP/1.1 over TLS inside a CONNECT tunnel (-via tcp). It reaches the proxy
// over HTTP/3, falling back to HTTP/2 over TCP where UDP is blocked, or over
// the transport -via names (h3, h2, h1), as in -via tcp,h2. Or it serves a local
// SOCKS5 and HTTP proxy that carries other programs' connections through
// the MASQUE proxy (see cmd/masque-client/internal/localproxy).
//
//	masque-client -proxy https://127.0.0.1:4433 -ca cert.pem fetch https://example.com/
//	masque-client -proxy https://127.0.0.1:4433 -ca cert.pem serve -socks5 127.0.0.1:1080 -http 127.0.0.1:8080
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/geoegress/geohint"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/masque"
)

func main() { cli.Main("masque-client", run) }

// options is masque-client's command line.
type options struct {
	proxy, ca, originCA, via, template, out string
	accountKey, attester, issuerDirectory   string
	disableDatagrams, verbose, forward      bool
	timeout                                 time.Duration
	tunnel                                  string // -via's tunnel: udp or tcp
	transport                               client.Transport
	url                                     *url.URL // fetch's argument
	serve                                   bool     // the command is serve
	socks5, http                            string   // serve's listen addresses
	geohash                                 string   // Sec-CH-Geohash hint, "" for none
	hops                                    []hop    // -proxy's proxies: one, or a relay and an egress
	vpn                                     vpnFlags // the vpn command's
}

const usage = `usage: masque-client -proxy https://HOST:PORT [flags] fetch URL
       masque-client -proxy https://HOST:PORT [flags] serve [-socks5 ADDR] [-http ADDR]
       masque-client -proxy https://HOST:PORT [flags] vpn [-routes PREFIXES] [-tun NAME]

fetch fetches URL through the MASQUE proxy and writes the body to stdout (or -o).
serve runs a local SOCKS5 and/or HTTP proxy whose connections all go through
the MASQUE proxy, until SIGINT or SIGTERM. vpn routes this machine's packets
through the proxy (CONNECT-IP) on a TUN device, until SIGINT or SIGTERM
(needs CAP_NET_ADMIN). Flags may come before or after the command word.
-proxy https://RELAY:PORT,https://EGRESS:PORT chains two proxies (fetch and
serve): the egress is reached through the relay, which learns only the
egress, and the egress only the relay's address.

`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("masque-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	fs.StringVar(&o.proxy, "proxy", "", "proxy `URL`, https://host:port (required); or an ingress relay's and an egress proxy's, comma-separated")
	fs.StringVar(&o.ca, "ca", "", "PEM `file` to trust for the proxy (default: system roots); with a chain, one for both or one per proxy, comma-separated")
	fs.StringVar(&o.originCA, "origin-ca", "", "PEM `file` to trust for the origin (default: system roots and -ca)")
	fs.StringVar(&o.via, "via", "udp", "`list` of a tunnel (udp: HTTP/3 inside CONNECT-UDP; tcp: HTTP/2 or HTTP/1.1 inside CONNECT)\nand a transport to the proxy (auto: HTTP/3, else HTTP/2 over TCP; h3; h2; h1), e.g. udp,h2")
	fs.StringVar(&o.template, "udp-template", masque.DefaultUDPTemplate, "the proxy's CONNECT-UDP URI `template`")
	fs.BoolVar(&o.disableDatagrams, "disable-datagrams", false, "carry UDP in DATAGRAM capsules on the stream, not QUIC datagrams")
	fs.BoolVar(&o.forward, "forward", false, "offer QUIC-aware forwarded mode (draft-ietf-masque-quic-proxy) on UDP tunnels over HTTP/3:\nthe inner QUIC connection's short-header packets then skip the connection to the proxy, scrambled\n(masqued: its -forward-listen port)")
	fs.StringVar(&o.out, "o", "", "write the body to `file` instead of stdout")
	fs.BoolVar(&o.verbose, "v", false, "report the tunnel, timings and throughput on stderr")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long (serve: on connecting to the proxy)")
	fs.StringVar(&o.socks5, "socks5", "", "serve: SOCKS5 listen `address`, such as 127.0.0.1:1080")
	fs.StringVar(&o.http, "http", "", "serve: HTTP proxy listen `address`, such as 127.0.0.1:8080")
	fs.StringVar(&o.accountKey, "account-key", "", "Privacy Pass: `file` holding the API key of an account at -attester; tokens are then minted and presented when the proxy asks\n(with a chain, this and -attester and -issuer-directory take one entry per proxy, comma-separated, an empty one for none)")
	fs.StringVar(&o.attester, "attester", "", "Privacy Pass: the attester's token request `URL` (with -account-key)")
	fs.StringVar(&o.geohash, "geohash", "", "send this Sec-CH-Geohash `hint` with every tunnel request, a geohash with an optional -CC country\n(e.g. u4pruy-DK): a proxy with geo egress then picks an exit address near it, within the country it places you in")
	fs.StringVar(&o.issuerDirectory, "issuer-directory", "", "Privacy Pass: the issuer directory `URL`; a proxy's token key must be listed there")
	o.vpn.register(fs)
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() == 0:
		return nil, cli.Usagef(fs, "missing command")
	case fs.Arg(0) != "fetch" && fs.Arg(0) != "serve" && fs.Arg(0) != "vpn":
		return nil, cli.Usagef(fs, "unknown command %q", fs.Arg(0))
	}
	o.serve, o.vpn.on = fs.Arg(0) == "serve", fs.Arg(0) == "vpn"
	if err := cli.Parse(fs, fs.Args()[1:]); err != nil {
		return nil, err
	}
	if err := o.parseVia(); err != nil {
		return nil, cli.Usagef(fs, "-via: %v", err)
	}
	if err := o.parseHops(fs); err != nil {
		return nil, err
	}
	if _, err := proxyconn.ParseTemplate(o.template); err != nil {
		return nil, cli.Usagef(fs, "-udp-template: %v", err)
	}
	if o.timeout <= 0 {
		return nil, cli.Usagef(fs, "-timeout wants a duration above zero, such as 30s, not %s", o.timeout)
	}
	if _, err := geohint.Parse(o.geohash); o.geohash != "" && err != nil {
		return nil, cli.Usagef(fs, "-geohash %q: %v", o.geohash, err)
	}
	if o.vpn.on {
		if err := o.vpn.check(fs, o); err != nil {
			return nil, err
		}
		return o, nil
	}
	if o.serve {
		switch {
		case fs.NArg() != 0:
			return nil, cli.Usagef(fs, "serve takes no arguments, only -socks5 and -http")
		case o.socks5 == "" && o.http == "":
			return nil, cli.Usagef(fs, "serve needs -socks5 ADDR, -http ADDR or both")
		case o.proxy == "":
			return nil, cli.Usagef(fs, "-proxy is required")
		}
		return o, nil
	}
	if fs.NArg() != 1 {
		return nil, cli.Usagef(fs, "fetch takes one URL")
	}
	u, err := url.Parse(fs.Arg(0))
	switch {
	case o.proxy == "":
		return nil, cli.Usagef(fs, "-proxy is required")
	case err != nil || u.Host == "":
		return nil, cli.Usagef(fs, "fetch needs an absolute URL, not %q", fs.Arg(0))
	case u.Scheme != "https" && !(u.Scheme == "http" && o.tunnel == "tcp"):
		return nil, cli.Usagef(fs, "-via %s fetches https URLs only (http needs -via tcp)", o.via)
	}
	o.url = u
	return o, nil
}

// parseVia splits -via into a tunnel kind (udp, the default, or tcp) and a
// transport to the proxy (auto, the default, h3, h2 or h1), each given at
// most once.
func (o *options) parseVia() error {
	o.tunnel = ""
	seenTransport := false
	for part := range strings.SplitSeq(o.via, ",") {
		switch part = strings.TrimSpace(part); part {
		case "udp", "tcp":
			if o.tunnel != "" {
				return fmt.Errorf("two tunnels in %q", o.via)
			}
			o.tunnel = part
		default:
			t, err := client.ParseTransport(part)
			if err != nil || part == "" {
				return fmt.Errorf("%q is neither udp, tcp, auto, h3, h2 nor h1", part)
			}
			if seenTransport {
				return fmt.Errorf("two transports in %q", o.via)
			}
			seenTransport, o.transport = true, t
		}
	}
	if o.tunnel == "" {
		o.tunnel = "udp"
	}
	return nil
}

// header is the extra tunnel request header the flags ask for.
func (o *options) header() http.Header {
	if o.geohash == "" {
		return nil
	}
	return http.Header{geohint.Header: {o.geohash}}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	originTLS, err := o.originTLS()
	if err != nil {
		return err
	}
	defer o.closeHops()
	if err := o.prepareHops(); err != nil {
		return err
	}
	if o.serve {
		return o.withFix(serve(ctx, o, stdout, stderr))
	}
	if o.vpn.on {
		return o.withFix(runVPN(ctx, o, stdout, stderr))
	}
	return o.withFix(o.fetch(ctx, originTLS, stdout, stderr))
}

// fetch fetches -o's URL through the proxy and writes the body out.
func (o *options) fetch(ctx context.Context, originTLS *tls.Config, stdout, stderr io.Writer) error {
	logf := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "* "+format+"\n", a...)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	start := time.Now()
	session, closeChain, err := o.connect(ctx, logf)
	if err != nil {
		return err
	}
	defer closeChain()
	conn := session.Conn()

	target := o.url.Host
	if o.url.Port() == "" {
		target = net.JoinHostPort(o.url.Hostname(), map[string]string{"https": "443", "http": "80"}[o.url.Scheme])
	}
	tunnelStart := time.Now()
	open, kind := viaTCP, "connect"
	if o.tunnel == "udp" {
		open, kind = viaUDP, "connect-udp over capsules"
		if conn.Datagrams() {
			kind = "connect-udp over QUIC datagrams"
		}
	}
	rt, udp, closeTunnel, err := open(ctx, conn, target, originTLS)
	if err != nil {
		return fmt.Errorf("opening a tunnel to %s: %w", target, err)
	}
	defer closeTunnel()
	if udp != nil && udp.Forwarding() {
		kind += ", QUIC-aware forwarded mode"
	}
	logf("tunnel to %s: %s, set up in %s", target, kind, since(tunnelStart))

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "masque-client")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		// Over -via udp the library has said so already; over -via tcp TLS
		// to the origin is http.Transport's.
		return proxyconn.CheckCert(proxyconn.PeerOrigin, target, err)
	}
	defer resp.Body.Close()
	logf("%s %s, first byte after %s", resp.Proto, resp.Status, since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", o.url.Redacted(), resp.Status)
	}
	n, err := o.save(stdout, resp.Body)
	if err != nil {
		return err
	}
	total := time.Since(start)
	logf("%d bytes in %s total, %.1f Mbit/s", n, total.Round(time.Microsecond), float64(n)*8/total.Seconds()/1e6)
	switch {
	case udp != nil && udp.Forwarding():
		f := udp.Forwarded()
		logf("forwarded mode: %d packets sent and %d received forwarded, %d dropped", f.Sent, f.Received, f.Dropped)
	case o.forward && o.tunnel == "udp":
		logf("forwarded mode: not accepted by the proxy (or not over HTTP/3 with datagrams)")
	}
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Microsecond) }

// viaUDP opens a CONNECT-UDP tunnel to target and returns an HTTP/3
// transport whose QUIC connection runs inside it, the tunnel, and a function
// that closes both.
func viaUDP(ctx context.Context, c *client.Conn, target string, originTLS *tls.Config) (http.RoundTripper, *proxyconn.UDPConn, func() error, error) {
	pc, err := c.ListenUDP(ctx, target)
	if err != nil {
		return nil, nil, nil, err
	}
	h3 := proxyconn.NewOriginTransport(pc, originTLS, nil)
	return h3, pc.(*proxyconn.UDPConn), func() error { return errors.Join(h3.Close(), pc.Close()) }, nil
}

// viaTCP opens a CONNECT tunnel to target and returns a transport that runs
// HTTP/2 or HTTP/1.1 (by ALPN; TLS for https) over it, and a function that
// closes both (and no UDP tunnel). The transport has one connection: the
// tunnel.
func viaTCP(ctx context.Context, c *client.Conn, target string, originTLS *tls.Config) (http.RoundTripper, *proxyconn.UDPConn, func() error, error) {
	conn, err := c.DialTCP(ctx, target)
	if err != nil {
		return nil, nil, nil, err
	}
	conns := make(chan net.Conn, 1)
	conns <- conn
	tr := &http.Transport{
		TLSClientConfig:   originTLS,
		ForceAttemptHTTP2: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			select {
			case c := <-conns:
				return c, nil
			default:
				return nil, errors.New("the tunnel is already in use")
			}
		},
	}
	return tr, nil, func() error { tr.CloseIdleConnections(); return conn.Close() }, nil
}

// originTLS returns the TLS configuration for the origin: -origin-ca, or
// the system roots plus every -ca file.
func (o *options) originTLS() (*tls.Config, error) {
	origin := &tls.Config{}
	if o.originCA != "" {
		var err error
		if origin.RootCAs, err = loadPool(o.originCA, x509.NewCertPool()); err != nil {
			return nil, cli.FlagErrorf("origin-ca", "%w", err)
		}
		return origin, nil
	}
	for _, h := range o.hops {
		if h.ca == "" {
			continue
		}
		if origin.RootCAs == nil {
			var err error
			if origin.RootCAs, err = x509.SystemCertPool(); err != nil {
				origin.RootCAs = x509.NewCertPool()
			}
		}
		var err error
		if origin.RootCAs, err = loadPool(h.ca, origin.RootCAs); err != nil {
			return nil, cli.FlagErrorf("ca", "%w", err)
		}
	}
	return origin, nil
}

// loadPool adds the certificates of a PEM file to pool.
func loadPool(file string, pool *x509.CertPool) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return pool, nil
}

// save copies the body to -o's file, or to stdout. A file left incomplete by
// an error is removed.
func (o *options) save(stdout io.Writer, body io.Reader) (int64, error) {
	if o.out == "" {
		n, err := io.Copy(stdout, body)
		if err != nil {
			return n, fmt.Errorf("reading the body: %w", err)
		}
		return n, nil
	}
	f, err := os.Create(o.out)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, body)
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(o.out)
		return n, fmt.Errorf("saving the body: %w", err)
	}
	return n, nil
}
