// Command masqued is the MASQUE proxy daemon: CONNECT (TCP) and CONNECT-UDP
// (RFC 9298) over HTTP/3 on one UDP socket. It runs with no configuration,
// refuses private and loopback targets unless told otherwise, and prints two
// lines to stdout for scripts to read:
//
//	listening on HOST:PORT
//	certificate /path/to/cert.pem
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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/tunnel"
	"github.com/masqued/masqued/privacypass"
)

func main() { cli.Main("masqued", run) }

// config is masqued's command line.
type config struct {
	listen, tlsCert, tlsKey, certOut, udpTemplate, logLevel string
	allowPrivate                                            bool
	limits                                                  tunnel.Limits
	drainTimeout                                            time.Duration
	auth                                                    string
	pp                                                      privacypass.ProxyConfig
	ppPerConn                                               bool
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("masqued", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: masqued [flags]\n\nServes CONNECT and CONNECT-UDP over HTTP/3. With no flags: 127.0.0.1:4433,\na self-signed certificate, and no tunnels to private addresses.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4433", "UDP `address` to serve HTTP/3 on")
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
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, wait this long for tunnels to end")
	fs.StringVar(&c.auth, "auth", "none", "tunnel authentication: none, or privacypass (Privacy Pass tokens, RFC 9577)")
	fs.StringVar(&c.pp.IssuerDirectory, "pp-issuer", "", "privacypass: the issuer directory `URL` whose type-2 keys to accept; none = run an issuer and an attester with a demo account in this process")
	fs.StringVar(&c.pp.Listen, "pp-listen", "127.0.0.1:4434", "privacypass: TCP `address` of the in-process issuer directory and attester (HTTPS)")
	fs.StringVar(&c.pp.StateDir, "pp-state", "", "privacypass: `dir` of the in-process issuer's keys and the demo account (default $XDG_STATE_HOME/masqued/privacypass)")
	fs.StringVar(&c.pp.Redis, "pp-redis", "", "privacypass: Redis `address` (host:port or socket path) for spent tokens shared by several proxies; none = memory")
	fs.BoolVar(&c.ppPerConn, "pp-per-connection", false, "privacypass: a token admits every tunnel of its connection, not one tunnel")
	if err := cli.Parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, cli.Usagef(fs, "unexpected argument %q", fs.Arg(0))
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
	pc, err := net.ListenPacket("udp", c.listen)
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
	proxy, err := tunnel.New(tunnel.Config{
		Template: tmpl,
		Policy: tunnel.Policy{
			AllowPrivate: c.allowPrivate,
			Self:         self,
			SelfPorts:    []netip.AddrPort{bound.AddrPort()},
		},
		Limits:  c.limits,
		Metrics: metrics,
		Logger:  logger,

		Auth:        auth,
		AuthPerConn: c.ppPerConn,
	})
	if err != nil {
		return err
	}
	srv := &h3proxy.Server{Proxy: proxy, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Logger: logger}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	fmt.Fprintf(stdout, "listening on %s\ncertificate %s\n", bound, certPath)
	logger.Info("serving HTTP/3", "addr", bound.String(), "allow_private_targets", c.allowPrivate)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("draining", "timeout", c.drainTimeout)
	// A fresh context: ctx is already done, and would make the drain not wait.
	drainCtx, cancel := context.WithTimeout(context.Background(), c.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		logger.Warn("drain incomplete, closing the remaining tunnels", "error", err)
	}
	closeErr := srv.Close()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	logger.Info("stopped")
	return closeErr
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
