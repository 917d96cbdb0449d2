// Command masqued is the MASQUE proxy daemon: CONNECT (TCP) and CONNECT-UDP
// (RFC 9298) over HTTP/3 on a UDP port, and over HTTP/2 and HTTP/1.1 on the
// same TCP port for networks that block UDP. It runs with no configuration,
// refuses private and loopback targets unless told otherwise, and prints two
// lines to stdout for scripts to read (a third, "admin on HOST:PORT", with
// -admin-listen):
//
//	listening on HOST:PORT
//	certificate /path/to/cert.pem
//
// Settings come from flags and, with -config, a YAML file of the same names
// (internal/config); -check-config FILE checks one and exits. SIGINT and
// SIGTERM drain and exit; SIGHUP starts a new masqued on the same sockets
// and drains this one (internal/restart says how QUIC is handed over).
//
// CONNECT-UDP over HTTP/2 needs GODEBUG=http2xconnect=1 when the process
// starts, so masqued re-executes itself with it (internal/xconnect).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/admin"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/restart"
	"github.com/masqued/masqued/internal/tunnel"
	"github.com/masqued/masqued/internal/xconnect"
)

func main() {
	if err := xconnect.Enable(); err != nil {
		fmt.Fprintln(os.Stderr, "masqued:", err)
		os.Exit(1)
	}
	cli.Main("masqued", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return runWith(ctx, args, stdout, stderr, true)
	})
}

// run runs masqued without restarts, as the in-process tests do: a process
// may hold only one restarter.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, stdout, stderr, false)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, restarts bool) (err error) {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// A mistake in a value that the config file set names its file and
	// line; the checks below only name the flag.
	defer func() { err = c.source.Locate(err) }()
	if err := c.validate(); err != nil {
		return err
	}
	var rs *restart.Restarter // nil: plain sockets, no SIGHUP
	if restarts && c.checkConfig == "" {
		if rs, err = restart.New(c.pidFile, time.Minute); err != nil {
			return err
		}
		defer rs.Stop()
	}
	s, err := c.prepare(stderr, rs)
	if err != nil {
		return err
	}
	defer s.close()
	if c.checkConfig != "" {
		fmt.Fprintf(stdout, "%s: ok\n", c.checkConfig)
		return nil
	}
	logger := s.logger
	pc, tl, err := listen(rs, c.listen, !c.noTCP)
	if err != nil {
		return err
	}
	defer pc.Close()
	bound := pc.LocalAddr().(*net.UDPAddr)
	var adminL net.Listener
	if c.adminListen != "" {
		if adminL, err = rs.Listen("tcp", c.adminListen); err != nil {
			return fmt.Errorf("-admin-listen: %w", err)
		}
		defer adminL.Close()
	}
	auth, err := s.authenticator(c, bound.String())
	if err != nil {
		return err
	}
	proxy, err := tunnel.New(tunnel.Config{
		Template: s.template,
		Policy: tunnel.Policy{
			AllowPrivate: c.allowPrivate,
			Self:         s.self,
			SelfPorts:    []netip.AddrPort{bound.AddrPort()},
		},
		Resolver:  s.resolver,
		Dialer:    s.dialer,
		Limits:    c.limits,
		Metrics:   s.metrics,
		Logger:    logger,
		AccessLog: s.accessLog,

		Auth:        auth,
		AuthPerConn: c.ppPerConn,

		IgnoreDatagramCapsules: c.interopBreak == "capsules",
	})
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{s.cert}}
	qc := h3proxy.DefaultQUICConfig()
	qc.HandshakeIdleTimeout = c.handshakeTimeout
	h3 := &h3proxy.Server{Proxy: proxy, TLSConfig: tlsConf, QUICConfig: qc, Logger: logger, MaxHeaderBytes: c.maxHeaderBytes}
	servers := []server{{"HTTP/3", h3}}
	served := make(chan error, 3)
	if tl != nil {
		h2 := &h2proxy.Server{Proxy: proxy, TLSConfig: tlsConf, AltSvc: fmt.Sprintf(`h3=":%d"`, bound.Port), Handler: s.own, Logger: logger,
			HandshakeTimeout: c.handshakeTimeout, MaxHeaderBytes: c.maxHeaderBytes}
		servers = append(servers, server{"HTTP/2 and HTTP/1.1", h2})
		go func() { served <- h2.Serve(tl) }()
	}
	var state admin.State
	var adminSrv *http.Server
	if adminL != nil {
		adminSrv = &http.Server{Handler: admin.Handler(s.registry, &state), ReadHeaderTimeout: 10 * time.Second}
		go func() { served <- adminSrv.Serve(adminL) }()
	}
	// Before Ready, which makes this the process that a service manager
	// signals: SIGHUP's default action is to exit.
	stopHUP := handleSIGHUP(rs, logger)
	defer stopHUP()
	// The TCP front serves; a parent process may drain now.
	if err := rs.Ready(); err != nil {
		return fmt.Errorf("telling the old process this one is ready: %w", err)
	}
	// stopping is cancelled once this process stops serving, for whatever
	// reason.
	stopping, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		// Reading the UDP socket while a parent still serves QUIC on it
		// would reset the parent's connections.
		if err := rs.WaitForParent(stopping); err != nil {
			<-stopping.Done() // report after the select below has chosen
			served <- http.ErrServerClosed
			return
		}
		state.Set(admin.Ready)
		logger.Info("serving HTTP/3", "addr", bound.String(), "after_restart", rs.HasParent())
		served <- h3.Serve(pc)
	}()
	logger.Info("serving", "addr", bound.String(), "tcp", tl != nil, "allow_private_targets", c.allowPrivate, "auth", c.auth)
	fmt.Fprintf(stdout, "listening on %s\ncertificate %s\n", bound, s.certPath)
	if adminL != nil {
		fmt.Fprintf(stdout, "admin on %s\n", adminL.Addr())
	}

	running := len(servers)
	if adminSrv != nil {
		running++
	}
	select {
	case err := <-served:
		stop()
		running--
		for _, s := range servers {
			s.srv.Close()
		}
		if adminSrv != nil {
			adminSrv.Close()
		}
		for range running {
			<-served
		}
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
		logger.Info("draining", "timeout", c.drainTimeout)
		rs.Stop() // a SIGHUP now must not bring up a successor
		if err := rs.Stopping(); err != nil {
			logger.Warn("telling systemd the service stops", "error", err)
		}
	case <-rs.Exit():
		logger.Info("a new process took over; draining", "timeout", c.drainTimeout)
	}
	stop()
	state.Set(admin.Draining)
	errs := drain(servers, c.drainTimeout, logger)
	if adminSrv != nil {
		errs = append(errs, adminSrv.Close())
	}
	for range running {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serving: %w", err))
		}
	}
	logger.Info("stopped")
	return errors.Join(errs...)
}

// server is one front.
type server struct {
	name string
	srv  interface {
		Close() error
		Shutdown(context.Context) error
	}
}

// drain shuts the fronts down: GOAWAY, no new tunnels, and up to timeout
// for open ones to end, after which the rest are closed.
func drain(servers []server, timeout time.Duration, logger *slog.Logger) []error {
	// A fresh context: the signal's is already done, and would make the
	// drain not wait.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil {
				logger.Warn("drain incomplete, closing the remaining tunnels", "server", s.name, "error", err)
			}
		})
	}
	wg.Wait()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.srv.Close())
	}
	return errs
}

// handleSIGHUP restarts the process on SIGHUP, until the returned function
// is called. Without a restarter, SIGHUP is ignored rather than fatal.
func handleSIGHUP(rs *restart.Restarter, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-hup:
				if rs == nil {
					logger.Warn("SIGHUP ignored: this process cannot restart itself")
					continue
				}
				logger.Info("SIGHUP: starting a new process")
				if err := rs.Upgrade(); err != nil {
					logger.Error("restart failed; this process goes on serving", "error", err)
				}
			case <-done:
				return
			}
		}
	})
	return func() {
		signal.Stop(hup)
		close(done)
		rs.Stop() // interrupts an Upgrade in progress
		wg.Wait()
	}
}

// listen opens the UDP socket and, with tcp, a TCP listener on the same
// port, inheriting them from a parent process if there is one. For port 0
// it retries until a port is free on both.
func listen(rs *restart.Restarter, addr string, tcp bool) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := rs.ListenPacket("udp", addr)
		if err != nil || !tcp {
			return pc, nil, err
		}
		tl, err := rs.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, tl, nil
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || try == 10 {
			return nil, nil, fmt.Errorf("listening on TCP beside UDP (-no-tcp serves UDP only): %w", err)
		}
	}
}

// newRegistry is the one registry /metrics serves: the proxy's collectors
// and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
