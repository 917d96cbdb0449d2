package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/masqued/masqued/internal/proc"
)

// The origins run in a process of their own, as a real origin runs on a host
// of its own: sharing the client's process, their sending competes with the
// client's receiving for the same Go scheduler, which is not what a user's
// machine sees. (-inprocess keeps them inside the bench, for profiling.)

// startOriginProcess runs this program again with -serve-origins and reads
// the origins' addresses from it.
func (e *env) startOriginProcess(size int64) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(e.cert.PrivateKey)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(e.dir, "origin-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	p, err := proc.Start(context.Background(), self, "-serve-origins",
		"-size", strconv.FormatInt(size, 10), "-origin-cert", e.originCertFile, "-origin-key", keyFile)
	if err != nil {
		return err
	}
	e.stops = append(e.stops, p.Stop)
	e.origins = p
	h3, err := p.Line("h3 ")
	if err != nil {
		return err
	}
	tcp, err := p.Line("tcp ")
	if err != nil {
		return err
	}
	tlsAddr, err := p.Line("tls ")
	if err != nil {
		return err
	}
	if e.tlsOrigin, err = net.ResolveTCPAddr("tcp", tlsAddr); err != nil {
		return err
	}
	if e.h3Origin, err = net.ResolveUDPAddr("udp", h3); err != nil {
		return err
	}
	e.tcpOrigin, err = net.ResolveTCPAddr("tcp", tcp)
	return err
}

// serveOrigins is the -serve-origins mode: serve the payload over HTTP/3 and
// TCP with the given certificate until SIGTERM or SIGINT.
func serveOrigins(size int64, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	e := &env{payload: newPayload(size), cert: cert}
	defer e.close()
	if e.h3Origin, err = e.startH3Origin(); err != nil {
		return err
	}
	if e.tcpOrigin, err = e.startTCPOrigin(nil); err != nil {
		return err
	}
	if e.tlsOrigin, err = e.startTCPOrigin(e.serverTLS()); err != nil {
		return err
	}
	fmt.Printf("h3 %s\ntcp %s\ntls %s\n", e.h3Origin, e.tcpOrigin, e.tlsOrigin)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return e.close()
}
