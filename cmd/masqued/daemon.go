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
	"sync"
	"time"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/admin"
	"github.com/masqued/masqued/internal/restart"
	"github.com/masqued/masqued/iptunnel"
	"github.com/masqued/masqued/tunnel"
)

// server is masqued as a daemon: the HTTP/3 front on its UDP socket, the TCP
// front (HTTP/2 and HTTP/1.1) on the same port unless -no-tcp, and the admin
// listener with -admin-listen. It has net/http's shape: Serve until Shutdown
// drains or Close stops at once. Unlike the fronts it owns its sockets:
// newServer opens them, or takes them over from a parent process through
// the restarter, and Close closes them. Deciding when to stop (a signal, a
// successor that took over) is the caller's.
type server struct {
	logger *slog.Logger
	rs     *restart.Restarter // nil: no parent process, plain sockets
	stdout io.Writer          // where the start-up lines go, for scripts

	// For the start-up lines and log.
	certPath     string
	allowPrivate bool
	auth         string
	relayTo      string // -relay-to, "" for an ordinary proxy

	pc     net.PacketConn
	tl     net.Listener          // nil with -no-tcp
	fs     *tunnel.ForwardSocket // nil without -forward-listen
	ip     *iptunnel.Server      // nil without -ip-pools
	adminL net.Listener          // nil without -admin-listen

	h3     *h3proxy.Server
	h3f    *h3proxy.Server // on fs; nil without -forward-listen
	h2     *h2proxy.Server // nil with -no-tcp
	fronts []front         // h3, then h2 if there is one
	admin  *http.Server    // nil without -admin-listen
	state  admin.State     // what /readyz answers

	// stopping is cancelled by Shutdown and Close: Serve then waits for its
	// goroutines and returns. Until then, a front that ends has failed.
	stopping context.Context
	stop     context.CancelFunc
}

// front is one of the two fronts, as Shutdown and Close see it.
type front struct {
	name string // for the log
	srv  interface {
		Close() error
		Shutdown(context.Context) error
	}
}

// newServer listens and builds the proxy, its fronts and the admin listener
// from the flags and the setup; it starts Privacy Pass, which listens too,
// if -auth asks for it. rs hands the sockets over (nil: plain sockets).
func newServer(c *flags, s *setup, rs *restart.Restarter, stdout io.Writer) (_ *server, err error) {
	pc, tl, err := listen(rs, c.listen, !c.noTCP)
	if err != nil {
		return nil, err
	}
	srv := &server{logger: s.logger, rs: rs, stdout: stdout, certPath: s.certPath, allowPrivate: c.allowPrivate, auth: c.auth, relayTo: c.relayTo, pc: pc, tl: tl}
	srv.stopping, srv.stop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			srv.Close()
		}
	}()
	bound := srv.addr()
	if c.adminListen != "" {
		if srv.adminL, err = rs.Listen("tcp", c.adminListen); err != nil {
			return nil, fmt.Errorf("-admin-listen: %w", err)
		}
	}
	selfPorts := []netip.AddrPort{bound.AddrPort()}
	if c.forwardListen != "" {
		fpc, err := rs.ListenPacket("udp", c.forwardListen)
		if err != nil {
			return nil, fmt.Errorf("-forward-listen: %w", err)
		}
		uc, ok := fpc.(*net.UDPConn)
		if !ok {
			fpc.Close()
			return nil, fmt.Errorf("-forward-listen: %s is not a UDP socket", c.forwardListen)
		}
		srv.fs = tunnel.NewForwardSocket(uc, s.metrics)
		selfPorts = append(selfPorts, uc.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	auth, err := s.authenticator(c, bound.String())
	if err != nil {
		return nil, err
	}
	if srv.ip, err = c.ip.server(s); err != nil {
		return nil, err
	}
	proxy, err := tunnel.New(tunnel.Config{
		Template: s.template,
		Policy: tunnel.Policy{
			AllowPrivate: c.allowPrivate,
			Self:         append(s.self[:len(s.self):len(s.self)], srv.ip.Gateways()...),
			SelfPorts:    selfPorts,
			RelayTo:      s.relayTo,
		},
		Resolver:  s.resolver,
		Dialer:    s.dialer,
		Limits:    c.limits,
		Metrics:   s.metrics,
		Logger:    s.logger,
		AccessLog: s.accessLog,

		Auth:        auth,
		AuthPerConn: c.ppPerConn,

		IgnoreDatagramCapsules: c.interopBreak == "capsules",
	})
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{s.cert}}
	qc := h3proxy.DefaultQUICConfig()
	if len(s.relayTo) > 0 {
		qc = h3proxy.RelayQUICConfig()
	}
	qc.HandshakeIdleTimeout = c.handshakeTimeout
	srv.h3 = &h3proxy.Server{Proxy: proxy, TLSConfig: tlsConf, QUICConfig: qc, Logger: s.logger, MaxHeaderBytes: c.maxHeaderBytes, IP: srv.ip}
	srv.fronts = []front{{"HTTP/3", srv.h3}}
	if srv.fs != nil {
		srv.h3f = &h3proxy.Server{Proxy: proxy, TLSConfig: tlsConf, QUICConfig: qc, Logger: s.logger, MaxHeaderBytes: c.maxHeaderBytes}
		srv.fronts = append(srv.fronts, front{"HTTP/3 with forwarded mode", srv.h3f})
	}
	if tl != nil {
		srv.h2 = &h2proxy.Server{Proxy: proxy, TLSConfig: tlsConf, AltSvc: fmt.Sprintf(`h3=":%d"`, bound.Port), Handler: s.own, Logger: s.logger,
			HandshakeTimeout: c.handshakeTimeout, MaxHeaderBytes: c.maxHeaderBytes, IP: srv.ip}
		srv.fronts = append(srv.fronts, front{"HTTP/2 and HTTP/1.1", srv.h2})
	}
	if srv.adminL != nil {
		srv.admin = &http.Server{Handler: admin.Handler(s.registry, &srv.state), ReadHeaderTimeout: 10 * time.Second}
	}
	return srv, nil
}

// addr is the address both fronts serve on.
func (srv *server) addr() *net.UDPAddr { return srv.pc.LocalAddr().(*net.UDPAddr) }

// Serve serves the fronts and the admin listener, and prints the start-up
// lines once the TCP front serves. It tells a parent process, if any, that
// this one is ready, and serves HTTP/3 only once the parent has exited:
// reading the UDP socket while the parent still serves QUIC on it would
// reset the parent's connections (internal/restart). After Shutdown or
// Close it returns http.ErrServerClosed once every front has stopped, or
// the errors of those that failed meanwhile; if a front or the admin
// listener fails before, it closes the rest and returns that error.
func (srv *server) Serve() error {
	if srv.stopping.Err() != nil {
		return http.ErrServerClosed
	}
	// One result from each goroutine below, which all end once the server
	// is closed.
	served := make(chan error, 4)
	running := 0
	if srv.h2 != nil {
		running++
		go func() { served <- srv.h2.Serve(srv.tl) }()
	}
	if srv.admin != nil {
		running++
		go func() { served <- srv.admin.Serve(srv.adminL) }()
	}
	// The TCP front serves; a parent process may drain now.
	if err := srv.rs.Ready(); err != nil {
		srv.Close()
		waitServed(served, running)
		return fmt.Errorf("telling the old process this one is ready: %w", err)
	}
	running++
	if srv.h3f != nil {
		running++
	}
	go func() {
		if err := srv.rs.WaitForParent(srv.stopping); err != nil {
			// Only once stopping, or the wait's end would be taken for
			// the front's failure.
			<-srv.stopping.Done()
			served <- http.ErrServerClosed
			if srv.h3f != nil {
				served <- http.ErrServerClosed
			}
			return
		}
		srv.state.Set(admin.Ready)
		srv.logger.Info("serving HTTP/3", "addr", srv.addr().String(), "after_restart", srv.rs.HasParent())
		if srv.h3f != nil {
			go func() { served <- srv.h3f.Serve(srv.fs) }()
		}
		served <- srv.h3.Serve(srv.pc)
	}()
	attrs := []any{"addr", srv.addr().String(), "tcp", srv.tl != nil, "allow_private_targets", srv.allowPrivate, "auth", srv.auth}
	if srv.relayTo != "" {
		attrs = append(attrs, "relay_to", srv.relayTo) // the only targets: the egress proxies
	}
	srv.logger.Info("serving", attrs...)
	fmt.Fprintf(srv.stdout, "listening on %s\ncertificate %s\n", srv.addr(), srv.certPath)
	if srv.adminL != nil {
		fmt.Fprintf(srv.stdout, "admin on %s\n", srv.adminL.Addr())
	}
	if srv.fs != nil {
		fmt.Fprintf(srv.stdout, "forwarding on %s\n", srv.fs.LocalAddr())
	}

	first := <-served
	if srv.stopping.Err() == nil {
		srv.Close()
		waitServed(served, running-1)
		return fmt.Errorf("serving: %w", first)
	}
	var failed []error
	for _, err := range append([]error{first}, waitServed(served, running-1)...) {
		if !errors.Is(err, http.ErrServerClosed) {
			failed = append(failed, fmt.Errorf("serving: %w", err))
		}
	}
	if failed == nil {
		return http.ErrServerClosed
	}
	return errors.Join(failed...)
}

// waitServed receives n results from served.
func waitServed(served <-chan error, n int) []error {
	errs := make([]error, 0, n)
	for range n {
		errs = append(errs, <-served)
	}
	return errs
}

// Shutdown drains: /readyz turns 503, both fronts send GOAWAY and accept no
// new connection or tunnel, and open tunnels have until ctx is done to end;
// then it closes the rest (Close). Give it a fresh context with the drain's
// timeout: a signal's context is already done, and would make the drain not
// wait.
func (srv *server) Shutdown(ctx context.Context) error {
	srv.stop()
	srv.state.Set(admin.Draining)
	var wg sync.WaitGroup
	for _, f := range srv.fronts {
		wg.Go(func() {
			if err := f.srv.Shutdown(ctx); err != nil {
				srv.logger.Warn("drain incomplete, closing the remaining tunnels", "server", f.name, "error", err)
			}
		})
	}
	wg.Wait()
	return srv.Close()
}

// Close closes the fronts and their tunnels, the admin listener and the
// sockets at once. It returns the servers' errors; those of the sockets
// are of sockets that the servers closed already.
func (srv *server) Close() error {
	srv.stop()
	var errs []error
	for _, f := range srv.fronts {
		errs = append(errs, f.srv.Close())
	}
	if srv.admin != nil {
		errs = append(errs, srv.admin.Close())
	}
	if srv.ip != nil {
		errs = append(errs, srv.ip.Close())
	}
	srv.pc.Close() // the HTTP/3 front leaves it open
	if srv.fs != nil {
		srv.fs.Close()
	}
	if srv.tl != nil {
		srv.tl.Close()
	}
	if srv.adminL != nil {
		srv.adminL.Close()
	}
	return errors.Join(errs...)
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
