package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/config"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/privacypass/ppserver"
	"github.com/masqued/masqued/tunnel"
)

// flags is masqued's command line; -config FILE sets the same names.
type flags struct {
	configFile, checkConfig                                 string
	listen, tlsCert, tlsKey, certOut, udpTemplate, logLevel string
	logFormat, accessLog, adminListen, pidFile              string
	egress                                                  geoegress.Options
	resolver, forwardListen, relayTo, trustGeohashRelays    string
	allowPrivate, noTCP                                     bool
	limits                                                  tunnel.Limits
	drainTimeout, handshakeTimeout                          time.Duration
	maxHeaderBytes                                          int
	auth, authCredentials                                   string
	authRate                                                float64
	authBurst                                               int
	pp                                                      ppserver.ProxyConfig
	ppPerConn                                               bool
	interopBreak                                            string
	ip                                                      ipFlags

	source config.Source // where -config or -check-config set flags
}

// authKinds are -auth's values; a comma-separated list chains them.
var authKinds = []string{"none", "bearer", "basic", "privacypass"}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	c := &flags{}
	fs := flag.NewFlagSet("masqued", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: masqued [flags]\n\nServes CONNECT and CONNECT-UDP over HTTP/3, HTTP/2 and HTTP/1.1. With no flags:\n127.0.0.1:4433 (UDP and TCP), a self-signed certificate, and no tunnels to\nprivate addresses. -config FILE reads flags from a YAML file (keys are the\nflag names); flags on the command line win.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.configFile, "config", "", "YAML `file` of settings, keyed by these flags' names")
	fs.StringVar(&c.checkConfig, "check-config", "", "check the YAML `file` (and the files it names), print \"FILE: ok\" and exit")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4433", "`address` to serve on: HTTP/3 over UDP, HTTP/2 and HTTP/1.1 over TCP on the same port")
	fs.BoolVar(&c.noTCP, "no-tcp", false, "serve HTTP/3 only, no TCP listener")
	fs.StringVar(&c.forwardListen, "forward-listen", "", "UDP `address` of a second HTTP/3 listener that also offers QUIC-aware forwarded mode (draft-ietf-masque-quic-proxy) to the UDP tunnels of clients that ask for it (masque-client -forward); none = off")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "certificate chain PEM `file` (with -tls-key); none = self-signed")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key PEM `file` (with -tls-cert)")
	fs.StringVar(&c.certOut, "cert-out", "", "where the self-signed certificate's PEM is kept, its key beside it (cert-key.pem for cert.pem), both reused while valid (`file`; default $XDG_STATE_HOME/masqued/cert.pem or ~/.local/state/masqued/cert.pem)")
	fs.BoolVar(&c.allowPrivate, "allow-private-targets", false, "allow tunnels to loopback, private and other special-purpose addresses")
	fs.StringVar(&c.udpTemplate, "udp-template", masque.DefaultUDPTemplate, "CONNECT-UDP URI `template`")
	fs.IntVar(&c.limits.MaxTunnels, "max-tunnels", 0, "open tunnels in total (0 = unlimited)")
	fs.IntVar(&c.limits.MaxTunnelsPerConn, "max-tunnels-per-conn", 0, "open tunnels per client connection (0 = the default, 10000)")
	fs.DurationVar(&c.limits.IdleTimeout, "idle-timeout", 0, "close a tunnel idle this long (0 = the default, 5m)")
	fs.DurationVar(&c.limits.DialTimeout, "dial-timeout", 0, "time to resolve and connect to a target (0 = the default, 10s)")
	fs.IntVar(&c.limits.MaxUDPPayload, "max-udp-payload", 0, "largest UDP payload relayed, in `bytes` (0 = the default, 16384)")
	fs.DurationVar(&c.handshakeTimeout, "handshake-timeout", 0, "time for a client's QUIC or TLS handshake and first request header (0 = the defaults, 5s for QUIC and 10s for TLS)")
	fs.IntVar(&c.maxHeaderBytes, "max-header-bytes", 0, "largest request header, in `bytes` (0 = the defaults, 16384 over TCP)")
	fs.StringVar(&c.relayTo, "relay-to", "", "ingress relay mode: a comma-separated `list` of egress proxies (HOST:PORT, names or addresses) that are the only targets tunnelled to, private ones included; every other target is refused (403); none = an ordinary proxy")
	fs.StringVar(&c.trustGeohashRelays, "trust-geohash-from-relays", "", "egress proxy of a two-hop chain: a comma-separated `list` of the relays' addresses or prefixes (10.0.0.0/8) whose clients' Sec-CH-Geohash hints are taken without the GeoIP cross-check (see README, Two-hop relay); none = every hint is bounded to the country of the client's address")
	fs.StringVar(&c.egress.Pools, "egress-pools", "", "geofeed `file` (RFC 8805; column 6: geohash of the cell) of egress addresses, chosen per client location; none = the host's default source address")
	fs.StringVar(&c.egress.Key, "egress-key", "", "`file` with the secret (16+ bytes) that keys egress selection; none = random at each start")
	fs.IntVar(&c.egress.Precision, "geohash-precision", 4, "geohash characters in a client's cell (1-12; 4 is about 39 × 20 km)")
	fs.StringVar(&c.egress.GeoIP, "geoip-db", "", "MaxMind-format `file` that places clients (with -egress-pools); none = every client in the default pool")
	fs.StringVar(&c.resolver, "resolver", "", "DNS server for targets: udp://IP[:53], tcp://IP[:53], tls://IP[:853] or https://HOST/dns-query (`URL`); none = the system resolver")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&c.accessLog, "access-log", "plain", "per-tunnel log line: plain (no address), client (with the client's address), target (with the target), or none; never both addresses")
	fs.StringVar(&c.adminListen, "admin-listen", "", "TCP `address` for /metrics, /healthz, /readyz and /debug/pprof/ (keep it on loopback or a management network); none = off")
	fs.StringVar(&c.pidFile, "pid-file", "", "`file` that gets the serving process's ID, also after a SIGHUP restart")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "on SIGINT, SIGTERM or a SIGHUP restart, wait this long for tunnels to end")
	fs.StringVar(&c.auth, "auth", "none", "tunnel authentication: none, bearer, basic or privacypass (Privacy Pass tokens, RFC 9577); a comma-separated list admits what any of them admits")
	fs.StringVar(&c.authCredentials, "auth-credentials", "", "bearer and basic: `file` of \"NAME SHA256HEX\" lines, the SHA-256 of each random secret")
	fs.Float64Var(&c.authRate, "auth-rate", 0, "bearer and basic: tunnels per second each credential may open (0 = unlimited)")
	fs.IntVar(&c.authBurst, "auth-burst", 10, "bearer and basic: tunnels a credential may open at once beyond -auth-rate")
	fs.StringVar(&c.pp.IssuerDirectory, "pp-issuer", "", "privacypass: the issuer directory `URL` whose type-2 keys to accept; none = run an issuer and an attester with a demo account in this process")
	fs.StringVar(&c.pp.Listen, "pp-listen", "127.0.0.1:4434", "privacypass: TCP `address` of the in-process issuer directory and attester (HTTPS)")
	fs.StringVar(&c.pp.StateDir, "pp-state", "", "privacypass: `dir` of the in-process issuer's keys and the demo account (default $XDG_STATE_HOME/masqued/privacypass)")
	fs.StringVar(&c.pp.Redis, "pp-redis", "", "privacypass: Redis `address` (host:port or socket path) for spent tokens shared by several proxies; none = memory")
	fs.BoolVar(&c.ppPerConn, "pp-per-connection", false, "a credential (with privacypass, a token) admits every tunnel of its connection, not one tunnel")
	fs.StringVar(&c.interopBreak, "interop-break", "", "for testing the interop runner only: break a `feature` on purpose (capsules: ignore DATAGRAM capsules)")
	c.ip.register(fs)
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, cli.Usagef(fs, "unexpected argument %q", fs.Arg(0))
	}
	if c.configFile != "" && c.checkConfig != "" {
		return nil, cli.Usagef(fs, "-config and -check-config: give one")
	}
	if file := c.configFile + c.checkConfig; file != "" {
		var err error
		if c.source, err = config.Load(fs, file, "config", "check-config"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validate checks what the flag types cannot, without touching a file or
// the network. Its errors are cli.FlagErrorf about the flag whose value is
// wrong (of a pair, the one given), so that they point at the config file's
// line when the value came from there.
func (c *flags) validate() error {
	for _, a := range []struct{ flag, addr, port string }{
		{"listen", c.listen, "4433"}, {"admin-listen", c.adminListen, "9464"}, {"pp-listen", c.pp.Listen, "4434"},
	} {
		if err := checkListen(a.flag, a.addr, a.port); err != nil {
			return err
		}
	}
	if c.egress.Pools == "" {
		if c.egress.Key != "" {
			return cli.FlagErrorf("egress-key", "needs -egress-pools")
		}
		if c.egress.GeoIP != "" {
			return cli.FlagErrorf("geoip-db", "needs -egress-pools")
		}
	}
	if _, err := c.relayTargets(); err != nil {
		return err
	}
	if _, err := c.trustedRelays(); err != nil {
		return err
	}
	if c.trustGeohashRelays != "" && c.egress.Pools == "" {
		return cli.FlagErrorf("trust-geohash-from-relays", "needs -egress-pools: hints choose among their egress addresses")
	}
	if _, _, err := c.ip.parse(); err != nil {
		return err
	}
	if p := c.egress.Precision; p < 1 || p > 12 {
		return cli.FlagErrorf("geohash-precision", "must be between 1 and 12, not %d", p)
	}
	for kind := range strings.SplitSeq(c.auth, ",") {
		if !slices.Contains(authKinds, kind) || kind == "none" && c.auth != "none" {
			return cli.FlagErrorf("auth", "want none, or a comma-separated list of bearer, basic and privacypass, not %q", c.auth)
		}
	}
	static := strings.Contains(c.auth, "bearer") || strings.Contains(c.auth, "basic")
	if static && c.authCredentials == "" {
		return cli.FlagErrorf("auth", "bearer and basic need -auth-credentials")
	}
	if !static && c.authCredentials != "" {
		return cli.FlagErrorf("auth-credentials", "is for -auth bearer or basic, not %q", c.auth)
	}
	// -check-config contacts no server: the issuer and Redis are checked
	// for their form here, and reached only when masqued serves.
	if u, err := url.Parse(c.pp.IssuerDirectory); c.pp.IssuerDirectory != "" && (err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http") {
		return cli.FlagErrorf("pp-issuer", "want the issuer directory's https:// URL, not %q", c.pp.IssuerDirectory)
	}
	if r := c.pp.Redis; r != "" && !filepath.IsAbs(r) {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return cli.FlagErrorf("pp-redis", "want HOST:PORT or the absolute path of a socket, not %q", r)
		}
	}
	if c.interopBreak != "" && c.interopBreak != "capsules" {
		return cli.FlagErrorf("interop-break", "must be capsules, not %q", c.interopBreak)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return cli.FlagErrorf("log-format", "must be text or json, not %q", c.logFormat)
	}
	l := c.limits
	for _, v := range []struct {
		flag     string
		negative bool
	}{
		{"max-tunnels", l.MaxTunnels < 0}, {"max-tunnels-per-conn", l.MaxTunnelsPerConn < 0},
		{"idle-timeout", l.IdleTimeout < 0}, {"dial-timeout", l.DialTimeout < 0}, {"max-udp-payload", l.MaxUDPPayload < 0},
		{"drain-timeout", c.drainTimeout < 0}, {"handshake-timeout", c.handshakeTimeout < 0},
		{"max-header-bytes", c.maxHeaderBytes < 0}, {"auth-rate", c.authRate < 0}, {"auth-burst", c.authBurst < 0},
	} {
		if v.negative {
			return cli.FlagErrorf(v.flag, "must not be negative")
		}
	}
	return nil
}

// relayTargets parses -relay-to.
func (c *flags) relayTargets() ([]masque.Target, error) {
	var ts []masque.Target
	for e := range strings.SplitSeq(c.relayTo, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		t, err := masque.ParseAuthority(e)
		if err != nil {
			return nil, cli.FlagErrorf("relay-to", "want HOST:PORT of an egress proxy (a name or address, and a port), not %q", e)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// trustedRelays parses -trust-geohash-from-relays: addresses or prefixes.
func (c *flags) trustedRelays() ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for e := range strings.SplitSeq(c.trustGeohashRelays, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		p, err := netip.ParsePrefix(e)
		if a, aerr := netip.ParseAddr(e); aerr == nil {
			p, err = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
		}
		if err != nil {
			return nil, cli.FlagErrorf("trust-geohash-from-relays", "want a relay's address or prefix (192.0.2.7, 10.0.0.0/8), not %q", e)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// checkListen checks that addr, a listen flag's value, is HOST:PORT (the
// host may be empty, for every interface), and suggests the fix for a port
// or a host alone; port is the flag's usual port. "" (off) passes.
func checkListen(flag, addr, port string) error {
	if _, _, err := net.SplitHostPort(addr); addr == "" || err == nil {
		return nil
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return cli.FlagErrorf(flag, "%q has no host: give 127.0.0.1:%s (this machine only) or :%s (every interface)", addr, addr, addr)
	}
	host := strings.Trim(addr, "[]")
	return cli.FlagErrorf(flag, "%q has no port: give HOST:PORT, such as %s", addr, net.JoinHostPort(host, port))
}

// fileFlag names the flag, of those a constructor that reads several files
// was given, whose file err failed to open or read; namesAndPaths alternate
// a flag's name and its value. Any other error is put on the first flag.
func fileFlag(err error, namesAndPaths ...string) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		for i := 0; i+1 < len(namesAndPaths); i += 2 {
			if path := namesAndPaths[i+1]; path != "" && pe.Path == path {
				return namesAndPaths[i]
			}
		}
	}
	return namesAndPaths[0]
}
