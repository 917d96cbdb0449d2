// Command masqued is the MASQUE proxy daemon: CONNECT (TCP) and CONNECT-UDP
// (RFC 9298) over HTTP/3 on a UDP port, and over HTTP/2 and HTTP/1.1 on the
// same TCP port for networks that block UDP. It runs with no configuration,
// refuses private and loopback targets unless told otherwise, and prints two
// lines to stdout for scripts to read:
//
//	listening on HOST:PORT
//	certificate /path/to/cert.pem
//
// CONNECT-UDP over HTTP/2 needs GODEBUG=http2xconnect=1 when the process
// starts, so masqued re-executes itself with it (internal/xconnect).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/resolver"
	"github.com/masqued/masqued/internal/tunnel"
	"github.com/masqued/masqued/internal/xconnect"
	"github.com/masqued/masqued/privacypass"
)

func main() {
	if err := xconnect.Enable(); err != nil {
		fmt.Fprintln(os.Stderr, "masqued:", err)
		os.Exit(1)
	}
	cli.Main("masqued", run)
}

// config is masqued's command line.
type config struct {
	listen, tlsCert, tlsKey, certOut, udpTemplate, logLevel string
	egress                                                  geoegress.Options
	resolver                                                string
	allowPrivate, noTCP                                     bool
	limits                                                  tunnel.Limits
	drainTimeout                                            time.Duration
	auth                                                    string
	pp                                                      privacypass.ProxyConfig
	ppPerConn                                               bool
	interopBreak                                            string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("masqued", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: masqued [flags]\n\nServes CONNECT and CONNECT-UDP over HTTP/3, HTTP/2 and HTTP/1.1. With no flags:\n127.0.0.1:4433 (UDP and TCP), a self-signed certificate, and no tunnels to\nprivate addresses.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4433", "`address` to serve on: HTTP/3 over UDP, HTTP/2 and HTTP/1.1 over TCP on the same port")
	fs.BoolVar(&c.noTCP, "no-tcp", false, "serve HTTP/3 only, no TCP listener")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "certificate chain PEM `file` (with -tls-key); none = self-signed")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key PEM `file` (with -tls-cert)")
	fs.StringVar(&c.certOut, "cert-out", "", "where to write the self-signed certificate's PEM (`file`; default $XDG_STATE_HOME/masqued/cert.pem or ~/.local/state/masqued/cert.pem)")
	fs.BoolVar(&c.allowPrivate, "allow-private-targets", false, "allow tunnels to loopback, private and other special-purpose addresses")
	fs.StringVar(&c.udpTemplate, "udp-template", tunnel.DefaultUDPTemplate, "CONNECT-UDP URI `template`")
	fs.IntVar(&c.limits.MaxTunnels, "max-tunnels", 0, "open tunnels in total (0 = unlimited)")
	fs.IntVar(&c.limits.MaxTunnelsPerConn, "max-tunnels-per-conn", 0, "open tunnels per client connection (0 = the default, 10000)")
	fs.DurationVar(&c.limits.IdleTimeout, "idle-timeout", 0, "close a tunnel idle this long (0 = the default, 5m)")
	fs.DurationVar(&c.limits.DialTimeout, "dial-timeout", 0, "time to resolve and connect to a target (0 = the default, 10s)")
	fs.IntVar(&c.limits.MaxUDPPayload, "max-udp-payload", 0, "largest UDP payload relayed, in `bytes` (0 = the default, 16384)")
	fs.StringVar(&c.egress.Pools, "egress-pools", "", "geofeed `file` (RFC 8805; column 6: geohash of the cell) of egress addresses, chosen per client location; none = the host's default source address")
	fs.StringVar(&c.egress.Key, "egress-key", "", "`file` with the secret (16+ bytes) that keys egress selection; none = random at each start")
	fs.IntVar(&c.egress.Precision, "geohash-precision", 4, "geohash characters in a client's cell (1-12; 4 is about 39 × 20 km)")
	fs.StringVar(&c.egress.GeoIP, "geoip-db", "", "MaxMind-format `file` that places clients (with -egress-pools); none = every client in the default pool")
	fs.StringVar(&c.resolver, "resolver", "", "DNS server for targets: udp://IP[:53], tcp://IP[:53], tls://IP[:853] or https://HOST/dns-query (`URL`); none = the system resolver")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, wait this long for tunnels to end")
	fs.StringVar(&c.auth, "auth", "none", "tunnel authentication: none, or privacypass (Privacy Pass tokens, RFC 9577)")
	fs.StringVar(&c.pp.IssuerDirectory, "pp-issuer", "", "privacypass: the issuer directory `URL` whose type-2 keys to accept; none = run an issuer and an attester with a demo account in this process")
	fs.StringVar(&c.pp.Listen, "pp-listen", "127.0.0.1:4434", "privacypass: TCP `address` of the in-process issuer directory and attester (HTTPS)")
	fs.StringVar(&c.pp.StateDir, "pp-state", "", "privacypass: `dir` of the in-process issuer's keys and the demo account (default $XDG_STATE_HOME/masqued/privacypass)")
	fs.StringVar(&c.pp.Redis, "pp-redis", "", "privacypass: Redis `address` (host:port or socket path) for spent tokens shared by several proxies; none = memory")
	fs.BoolVar(&c.ppPerConn, "pp-per-connection", false, "privacypass: a token admits every tunnel of its connection, not one tunnel")
	fs.StringVar(&c.interopBreak, "interop-break", "", "for testing the interop runner only: break a `feature` on purpose (capsules: ignore DATAGRAM capsules)")
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	if c.interopBreak != "" && c.interopBreak != "capsules" {
		return nil, cli.Usagef(fs, "-interop-break must be capsules, not %q", c.interopBreak)
	}
	if fs.NArg() > 0 {
		return nil, cli.Usagef(fs, "unexpected argument %q", fs.Arg(0))
	}
	if c.egress.Pools == "" && (c.egress.Key != "" || c.egress.GeoIP != "") {
		return nil, cli.Usagef(fs, "-egress-key and -geoip-db need -egress-pools")
	}
	l := c.limits
	if c.auth != "none" && c.auth != "privacypass" {
		return nil, cli.Usagef(fs, "-auth must be none or privacypass, not %q", c.auth)
	}
	if l.MaxTunnels < 0 || l.MaxTunnelsPerConn < 0 || l.IdleTimeout < 0 || l.DialTimeout < 0 || l.MaxUDPPayload < 0 || c.drainTimeout < 0 {
		return nil, cli.Usagef(fs, "limits and timeouts must not be negative")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	tmpl, err := tunnel.ParseTemplate(c.udpTemplate)
	if err != nil {
		return fmt.Errorf("-udp-template %q: %w", c.udpTemplate, err)
	}
	cert, certPath, err := c.certificate()
	if err != nil {
		return err
	}
	self, err := tunnel.LocalAddrs()
	if err != nil {
		return fmt.Errorf("listing the host's addresses: %w", err)
	}
	metrics, err := tunnel.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return err
	}
	var res tunnel.Resolver // nil = the system resolver
	if c.resolver != "" {
		r, err := resolver.New(c.resolver, resolver.Options{})
		if err != nil {
			return fmt.Errorf("-resolver: %w", err)
		}
		defer r.Close()
		res = r
	}
	var dialer tunnel.Dialer // nil = the host's default source address
	var own http.Handler     // what the TCP front serves of its own
	if c.egress.Pools != "" {
		d, err := geoegress.Open(c.egress)
		if err != nil {
			return err
		}
		defer d.Close()
		d.AllowPrivate = c.allowPrivate
		dialer = d
		mux := http.NewServeMux()
		mux.Handle("GET /.well-known/geofeed.csv", d.Selector.FeedHandler()) // RFC 8805 §3
		own = mux
	}
	pc, tl, err := listen(c.listen, !c.noTCP)
	if err != nil {
		return err
	}
	defer pc.Close()
	bound := pc.LocalAddr().(*net.UDPAddr)
	var auth tunnel.Authenticator
	if c.auth == "privacypass" {
		if c.pp.StateDir == "" {
			if c.pp.StateDir, err = statePath("privacypass", "-pp-state"); err != nil {
				return err
			}
		}
		c.pp.TLSConfig, c.pp.ProxyName, c.pp.Logger = &tls.Config{Certificates: []tls.Certificate{cert}}, bound.String(), logger
		pp, err := privacypass.StartProxyAuth(c.pp)
		if err != nil {
			return fmt.Errorf("-auth privacypass: %w", err)
		}
		defer pp.Close()
		auth = pp
		if pp.AttesterURL != "" {
			logger.Info("privacypass: issuer and attester in this process", "attester", pp.AttesterURL, "directory", pp.DirectoryURL, "demo_key_file", pp.KeyFile)
		}
	}
	selfPorts := []netip.AddrPort{bound.AddrPort()}
	proxy, err := tunnel.New(tunnel.Config{
		Template: tmpl,
		Policy: tunnel.Policy{
			AllowPrivate: c.allowPrivate,
			Self:         self,
			SelfPorts:    selfPorts,
		},
		Resolver: res,
		Dialer:   dialer,
		Limits:   c.limits,
		Metrics:  metrics,
		Logger:   logger,

		Auth:        auth,
		AuthPerConn: c.ppPerConn,

		IgnoreDatagramCapsules: c.interopBreak == "capsules",
	})
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	h3 := &h3proxy.Server{Proxy: proxy, TLSConfig: tlsConf, Logger: logger}
	servers := []server{{"HTTP/3", h3, func() error { return h3.Serve(pc) }}}
	if tl != nil {
		h2 := &h2proxy.Server{Proxy: proxy, TLSConfig: tlsConf, AltSvc: fmt.Sprintf(`h3=":%d"`, bound.Port), Handler: own, Logger: logger}
		servers = append(servers, server{"HTTP/2 and HTTP/1.1", h2, func() error { return h2.Serve(tl) }})
	}
	served := make(chan error, len(servers))
	for _, s := range servers {
		go func() { served <- s.serve() }()
		logger.Info("serving "+s.name, "addr", bound.String(), "allow_private_targets", c.allowPrivate)
	}
	fmt.Fprintf(stdout, "listening on %s\ncertificate %s\n", bound, certPath)

	select {
	case err := <-served:
		for _, s := range servers {
			s.srv.Close()
		}
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("draining", "timeout", c.drainTimeout)
	// A fresh context: ctx is already done, and would make the drain not wait.
	drainCtx, cancel := context.WithTimeout(context.Background(), c.drainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(drainCtx); err != nil {
				logger.Warn("drain incomplete, closing the remaining tunnels", "server", s.name, "error", err)
			}
		})
	}
	wg.Wait()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.srv.Close())
	}
	for range servers {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serving: %w", err))
		}
	}
	logger.Info("stopped")
	return errors.Join(errs...)
}

// server is one front and how to serve it.
type server struct {
	name string
	srv  interface {
		Close() error
		Shutdown(context.Context) error
	}
	serve func() error
}

// listen opens the UDP socket and, with tcp, a TCP listener on the same
// port. For port 0 it retries until a port is free on both.
func listen(addr string, tcp bool) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil || !tcp {
			return pc, nil, err
		}
		tl, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, tl, nil
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || try == 10 {
			return nil, nil, fmt.Errorf("listening on TCP beside UDP (-no-tcp serves UDP only): %w", err)
		}
	}
}

// certificate loads -tls-cert and -tls-key, or makes a self-signed certificate
// and writes its PEM to -cert-out. It returns the certificate and the absolute
// path of the PEM that clients should trust.
func (c *config) certificate() (tls.Certificate, string, error) {
	switch {
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return tls.Certificate{}, "", errors.New("-tls-cert and -tls-key go together: give both or neither")
	case c.tlsCert != "" && c.certOut != "":
		return tls.Certificate{}, "", errors.New("-cert-out is for the self-signed certificate, not with -tls-cert")
	case c.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("loading -tls-cert and -tls-key: %w", err)
		}
		path, err := filepath.Abs(c.tlsCert)
		return cert, path, err
	}
	cert, pemBytes, err := certs.SelfSigned()
	if err != nil {
		return tls.Certificate{}, "", err
	}
	path := c.certOut
	if path == "" {
		if path, err = defaultCertPath(); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	if path, err = filepath.Abs(path); err != nil {
		return tls.Certificate{}, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return tls.Certificate{}, "", fmt.Errorf("writing the certificate: %w", err)
	}
	if err := os.WriteFile(path, pemBytes, 0o644); err != nil {
		return tls.Certificate{}, "", fmt.Errorf("writing the certificate: %w", err)
	}
	return cert, path, nil
}

// defaultCertPath is cert.pem in masqued's XDG state directory.
func defaultCertPath() (string, error) { return statePath("cert.pem", "-cert-out") }

// statePath is name in masqued's XDG state directory; flag is the option
// that sets the path instead, for the error when there is no such directory.
func statePath(name, flag string) (string, error) {
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "masqued", name), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no state directory (give %s): %w", flag, err)
	}
	return filepath.Join(home, ".local", "state", "masqued", name), nil
}
