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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/restart"
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

// runWith wires masqued up: flags into a setup and a server, and the events
// that stop it. ctx's end (SIGINT, SIGTERM) drains for good; a new process
// that took over after SIGHUP (rs.Exit) drains this one for it; either way
// the drain has -drain-timeout. With restarts, the process hands its sockets
// over on SIGHUP.
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
	srv, err := newServer(c, s, rs, stdout)
	if err != nil {
		return err
	}
	logger := s.logger
	// Before Serve's Ready, which makes this the process that a service
	// manager signals: SIGHUP's default action is to exit.
	stopHUP := handleSIGHUP(rs, logger)
	defer stopHUP()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		logger.Info("draining", "timeout", c.drainTimeout)
		rs.Stop() // a SIGHUP now must not bring up a successor
		if err := rs.Stopping(); err != nil {
			logger.Warn("telling systemd the service stops", "error", err)
		}
	case <-rs.Exit():
		logger.Info("a new process took over; draining", "timeout", c.drainTimeout)
	}
	// A fresh context: the signal's is already done, and would make the
	// drain not wait.
	drainCtx, cancel := context.WithTimeout(context.Background(), c.drainTimeout)
	defer cancel()
	err = srv.Shutdown(drainCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	logger.Info("stopped")
	return err
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

// newRegistry is the one registry /metrics serves: the proxy's collectors
// and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
