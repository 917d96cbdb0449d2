package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/internal/auth"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/resolver"
	"github.com/masqued/masqued/internal/restart"
	"github.com/masqued/masqued/internal/tunnel"
	"github.com/masqued/masqued/privacypass"
)

// setup is what masqued builds from its flags before it listens: all that
// reads a file or parses a value, so that -check-config checks it too.
type setup struct {
	logger    *slog.Logger
	template  *tunnel.Template
	accessLog tunnel.AccessLog
	cert      tls.Certificate
	certPath  string
	self      []netip.Addr
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
		return nil, cli.Configf("-access-log: %w", err)
	}
	if s.template, err = tunnel.ParseTemplate(c.udpTemplate); err != nil {
		return nil, cli.Configf("-udp-template %q: %w", c.udpTemplate, err)
	}
	if c.checkConfig == "" || c.tlsCert != "" || c.tlsKey != "" {
		if s.cert, s.certPath, err = c.certificate(rs); err != nil {
			return nil, err
		}
	}
	if s.self, err = tunnel.LocalAddrs(); err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	if s.metrics, err = tunnel.NewMetrics(s.registry); err != nil {
		return nil, err
	}
	if c.resolver != "" {
		r, err := resolver.New(c.resolver, resolver.Options{Registerer: s.registry})
		if err != nil {
			return nil, cli.Configf("-resolver: %w", err)
		}
		s.closers = append(s.closers, r.Close)
		s.resolver = r
	}
	if c.egress.Pools != "" {
		c.egress.Registerer = s.registry
		d, err := geoegress.Open(c.egress)
		if err != nil {
			return nil, cli.Configf("-egress-pools: %w", err)
		}
		s.closers = append(s.closers, d.Close)
		d.AllowPrivate = c.allowPrivate
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
			return nil, cli.Configf("-auth-credentials: %w", err)
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
			pp, err := privacypass.StartProxyAuth(c.pp)
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

// certificate loads -tls-cert and -tls-key, or makes a self-signed certificate
// and writes its PEM to -cert-out. A self-signed certificate passes to the
// processes that take over from this one (rs), so that a restart does not
// change it. It returns the certificate and the absolute path of the PEM
// that clients should trust.
func (c *flags) certificate(rs *restart.Restarter) (tls.Certificate, string, error) {
	switch {
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return tls.Certificate{}, "", cli.Configf("-tls-cert and -tls-key go together: give both or neither")
	case c.tlsCert != "" && c.certOut != "":
		return tls.Certificate{}, "", cli.Configf("-cert-out is for the self-signed certificate, not with -tls-cert")
	case c.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return tls.Certificate{}, "", cli.Configf("loading -tls-cert and -tls-key: %w", err)
		}
		path, err := filepath.Abs(c.tlsCert)
		return cert, path, err
	}
	// The certificate's PEM, then its key's.
	both, err := rs.Keep("self-signed", func() ([]byte, error) {
		cert, certPEM, err := certs.SelfSigned()
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return nil, err
		}
		return append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...), nil
	})
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err := tls.X509KeyPair(both, both)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
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
