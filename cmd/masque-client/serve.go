package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/cmd/masque-client/internal/localproxy"
)

// drainTimeout is how long serve waits for open connections on SIGINT or
// SIGTERM before it cuts them.
const drainTimeout = 5 * time.Second

// entryServer is what localproxy's two servers have in common.
type entryServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serve runs the local entry point until ctx is done: a SOCKS5 server on
// -socks5 and an HTTP proxy on -http, both through one connection to the
// MASQUE proxy. It prints "socks5 listening on ADDR" and "http listening on
// ADDR" once it accepts connections.
func serve(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	dialCtx, cancel := context.WithTimeout(ctx, o.timeout)
	// A session, not one connection: serve runs for hours, and the proxy
	// may restart or its connection break; the next tunnel dials anew.
	// Through a chain, every hop's is a session.
	tun, closeChain, err := o.connect(dialCtx, nil)
	cancel()
	if err != nil {
		return err
	}
	defer closeChain()
	logger.Info("connected to the proxy", "transport", tun.Conn().Transport())

	var servers []entryServer
	served := make(chan error, 2)
	for _, s := range []struct {
		name, addr string
		srv        entryServer
	}{
		// Failed tunnels are logged by default, their targets only with -v:
		// the log is this machine's user's, but may outlive what they asked.
		{"socks5", o.socks5, &localproxy.SOCKS5Server{Tunneler: fixing{tun, o}, Logger: logger, LogTargets: o.verbose}},
		{"http", o.http, &localproxy.HTTPServer{Tunneler: fixing{tun, o}, Logger: logger, LogTargets: o.verbose}},
	} {
		if s.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			return errors.Join(fmt.Errorf("-%s: %w", s.name, err), shutdown(servers, served, len(servers)))
		}
		servers = append(servers, s.srv)
		go func() { served <- s.srv.Serve(l) }()
		fmt.Fprintf(stdout, "%s listening on %s\n", s.name, l.Addr())
	}

	running := len(servers)
	select {
	case err = <-served:
		err = fmt.Errorf("serving: %w", err)
		running--
	case <-ctx.Done():
	}
	return errors.Join(err, shutdown(servers, served, running))
}

// fixing is a session whose failures say how to fix them, as fetch's do.
type fixing struct {
	s *client.Session
	o *options
}

func (f fixing) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	c, err := f.s.DialTCP(ctx, target)
	return c, f.o.withFix(err)
}

func (f fixing) ListenUDP(ctx context.Context, target string) (net.PacketConn, error) {
	pc, err := f.s.ListenUDP(ctx, target)
	return pc, f.o.withFix(err)
}

// shutdown drains servers for up to drainTimeout, then closes them, and
// collects the results of the running Serve calls from served.
func shutdown(servers []entryServer, served <-chan error, running int) error {
	// A fresh context: the signal's is done already, and would cut the drain.
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for range running {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
