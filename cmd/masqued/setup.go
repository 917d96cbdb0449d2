package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/internal/auth"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/resolver"
	"github.com/masqued/masqued/internal/restart"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/privacypass/ppserver"
	"github.com/masqued/masqued/tunnel"
)

// setup is what masqued builds from its flags before it listens: all that
// reads a file or parses a value, so that -check-config checks it too.
type setup struct {
	logger    *slog.Logger
	template  *masque.Template
	accessLog tunnel.AccessLog
	cert      tls.Certificate
	certPath  string
	self      []netip.Addr
	relayTo   []masque.Target // -relay-to: the only targets, when set
	registry  *prometheus.Registry
	metrics   *tunnel.Metrics
	resolver  tunnel.Resolver // nil = the system resolver
	dialer    tunnel.Dialer   // nil = the host's default source address
	own       http.Handler    // what the TCP front serves of its own
	static    []tunnel.Authenticator
	closers   []func() error
}

// prepare builds the setup. Its errors are *cli.ConfigError but for the
// machine's own failures.
func (c *flags) prepare(stderr io.Writer, rs *restart.Restarter) (_ *setup, err error) {
	s := &setup{registry: newRegistry()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.logger, err = cli.Logger(stderr, c.logLevel, c.logFormat); err != nil {
		return nil, err
	}
	if s.accessLog, err = tunnel.ParseAccessLog(c.accessLog); err != nil {
		return nil, cli.FlagErrorf("access-log", "%w", err)
	}
	if s.template, err = masque.ParseTemplate(c.udpTemplate); err != nil {
		return nil, cli.FlagErrorf("udp-template", "%q: %w", c.udpTemplate, err)
	}
	if c.checkConfig == "" || c.tlsCert != "" || c.tlsKey != "" {
		if s.cert, s.certPath, err = c.certificate(rs, s.logger); err != nil {
			return nil, err
		}
	}
	if s.self, err = tunnel.LocalAddrs(); err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	s.relayTo, _ = c.relayTargets() // validate has checked it
	if s.metrics, err = tunnel.NewMetrics(s.registry); err != nil {
		return nil, err
	}
	if c.resolver != "" {
		r, err := resolver.New(c.resolver, resolver.Options{Registerer: s.registry})
		if err != nil {
			return nil, cli.FlagErrorf("resolver", "%w", err)
		}
		s.closers = append(s.closers, r.Close)
		s.resolver = r
	}
	if c.egress.Pools != "" {
		c.egress.Registerer = s.registry
		d, err := geoegress.Open(c.egress)
		if err != nil {
			return nil, cli.FlagErrorf(fileFlag(err, "egress-pools", c.egress.Pools, "egress-key", c.egress.Key, "geoip-db", c.egress.GeoIP), "%w", err)
		}
		s.closers = append(s.closers, d.Close)
		d.AllowPrivate = c.allowPrivate
		d.TrustedRelays, _ = c.trustedRelays() // validate has checked it
		s.dialer = d
		mux := http.NewServeMux()
		mux.Handle("GET /.well-known/geofeed.csv", d.Selector.FeedHandler()) // RFC 8805 §3
		s.own = mux
	}
	for kind := range strings.SplitSeq(c.auth, ",") {
		if kind != "bearer" && kind != "basic" {
			continue
		}
		scheme := auth.Bearer
		if kind == "basic" {
			scheme = auth.Basic
		}
		a, err := auth.NewStatic(auth.StaticConfig{Scheme: scheme, File: c.authCredentials, Rate: c.authRate, Burst: c.authBurst})
		if err != nil {
			return nil, cli.FlagErrorf("auth-credentials", "%w", err)
		}
		s.static = append(s.static, a)
	}
	return s, nil
}

// authenticator returns -auth's authenticator (nil for none), starting
// Privacy Pass, which listens, if asked for. proxyName is the proxy's
// address, which tokens are bound to.
func (s *setup) authenticator(c *flags, proxyName string) (tunnel.Authenticator, error) {
	var chain auth.Chain
	static := s.static
	for kind := range strings.SplitSeq(c.auth, ",") {
		switch kind {
		case "bearer", "basic":
			chain, static = append(chain, static[0]), static[1:]
		case "privacypass":
			if c.pp.StateDir == "" {
				dir, err := statePath("privacypass", "-pp-state")
				if err != nil {
					return nil, err
				}
				c.pp.StateDir = dir
			}
			c.pp.TLSConfig, c.pp.ProxyName, c.pp.Logger = &tls.Config{Certificates: []tls.Certificate{s.cert}}, proxyName, s.logger
			c.pp.Registerer = s.registry
			pp, err := ppserver.StartProxyAuth(c.pp)
			if err != nil {
				return nil, fmt.Errorf("-auth privacypass: %w", err)
			}
			s.closers = append(s.closers, pp.Close)
			if pp.AttesterURL != "" {
				s.logger.Info("privacypass: issuer and attester in this process", "attester", pp.AttesterURL, "directory", pp.DirectoryURL, "demo_key_file", pp.KeyFile)
			}
			chain = append(chain, pp)
		}
	}
	switch len(chain) {
	case 0:
		return nil, nil
	case 1:
		return chain[0], nil
	}
	return chain, nil
}

// close releases what the setup opened, last first.
func (s *setup) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// certificate loads -tls-cert and -tls-key, or else the self-signed
// certificate kept at -cert-out (with its key beside it, see
// certs.KeyFileFor) while it is still good for this start, or makes and keeps
// a new one, saying why in a log line. A self-signed certificate also passes
// in memory to the processes that take over from this one (rs), so that a
// restart serves the very certificate its clients trust, even if the files
// changed meanwhile; the new process puts it back in them. It returns the
// certificate and the absolute path of the PEM that clients should trust.
func (c *flags) certificate(rs *restart.Restarter, logger *slog.Logger) (tls.Certificate, string, error) {
	switch {
	case c.tlsKey == "" && c.tlsCert != "":
		return tls.Certificate{}, "", cli.FlagErrorf("tls-cert", "needs -tls-key: give both or neither")
	case c.tlsCert == "" && c.tlsKey != "":
		return tls.Certificate{}, "", cli.FlagErrorf("tls-key", "needs -tls-cert: give both or neither")
	case c.tlsCert != "" && c.certOut != "":
		return tls.Certificate{}, "", cli.FlagErrorf("cert-out", "is for the self-signed certificate, not with -tls-cert")
	case c.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return tls.Certificate{}, "", cli.FlagErrorf(fileFlag(err, "tls-cert", c.tlsCert, "tls-key", c.tlsKey), "loading the certificate and key: %w", err)
		}
		path, err := filepath.Abs(c.tlsCert)
		return cert, path, err
	}
	path := c.certOut
	if path == "" {
		var err error
		if path, err = defaultCertPath(); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	kept := certs.Kept{CertFile: path, KeyFile: certs.KeyFileFor(path), Hosts: c.certHosts()}
	// The certificate's PEM, then its key's.
	both, err := rs.Keep("self-signed", func() ([]byte, error) {
		cert, err := kept.Load(time.Now())
		if err != nil {
			logger.Info("making a new self-signed certificate", "file", path, "reason", err)
			if cert, _, err = certs.SelfSigned(kept.Hosts...); err != nil {
				return nil, err
			}
		}
		certPEM, keyPEM, err := certs.MarshalPEM(cert)
		return append(certPEM, keyPEM...), err
	})
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err := tls.X509KeyPair(both, both)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if err := kept.Store(cert); err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, path, nil
}

// certHosts are the hosts the self-signed certificate covers besides
// localhost, 127.0.0.1 and ::1: those of -listen and, when this process
// serves Privacy Pass issuance, of -pp-listen. An unspecified address
// (0.0.0.0, ::) adds none, as the host's own addresses may change from one
// start to the next: a proxy that other machines reach wants -tls-cert.
func (c *flags) certHosts() []string {
	addrs := []string{c.listen}
	if strings.Contains(c.auth, "privacypass") && c.pp.IssuerDirectory == "" {
		addrs = append(addrs, c.pp.Listen)
	}
	var hosts []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			continue // a bad address fails when masqued listens on it
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			continue
		}
		hosts = append(hosts, host)
	}
	return hosts
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
