// Command connectipgo is the interop runner's connect-ip-go client: it
// opens a CONNECT-IP tunnel (RFC 9484) with github.com/quic-go/connect-ip-go
// over HTTP/3, brings up a TUN device with the assigned addresses and a
// route to -routes through it, prints "up ADDRESSES" and relays packets
// until SIGINT or SIGTERM, or until the tunnel ends.
//
//	connectipgo -proxy https://10.77.1.1:4433 -ca cert.pem -routes 10.77.2.0/24
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	connectip "github.com/quic-go/connect-ip-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/yosida95/uritemplate/v3"

	"github.com/masqued/masqued/internal/tun"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "connectipgo:", err)
		os.Exit(1)
	}
}

func run() error {
	proxy := flag.String("proxy", "", "proxy `URL`")
	ca := flag.String("ca", "", "PEM `file` to trust for the proxy")
	routes := flag.String("routes", "", "comma-separated `prefixes` to route through the tunnel")
	dev := flag.String("tun", "cipgo0", "TUN device `name`")
	flag.Parse()
	u, err := url.Parse(*proxy)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-proxy %q: want https://host:port", *proxy)
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("-ca: no certificate")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(dctx, u.Host, &tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{EnableDatagrams: true, InitialPacketSize: 1350})
	if err != nil {
		return err
	}
	defer qc.CloseWithError(0, "")
	req, err := connectip.NewRequest(dctx, uritemplate.MustNew(*proxy+"/.well-known/masque/ip/*/*/"))
	if err != nil {
		return err
	}
	conn, _, err := connectip.NewClientConn((&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)).Dial(req)
	if err != nil {
		return err
	}
	defer conn.Close()
	assigned, err := conn.ReceiveAddressAssignment(dctx)
	if err != nil {
		return err
	}
	d, err := tun.Open(*dev)
	if err != nil {
		return err
	}
	defer d.Close()
	var addrs []netip.Prefix
	for _, a := range assigned {
		addrs = append(addrs, a.IPPrefix)
	}
	if err := d.Up(1280, addrs...); err != nil {
		return err
	}
	for r := range strings.SplitSeq(*routes, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			return fmt.Errorf("-routes: %w", err)
		}
		if err := d.AddRoute(p); err != nil {
			return err
		}
	}
	fmt.Println("up", addrs)
	var wg sync.WaitGroup
	ended := make(chan error, 2)
	wg.Go(func() {
		b := make([]byte, 2000)
		for {
			n, err := d.Read(b)
			if err != nil {
				ended <- err
				return
			}
			if icmp, err := conn.WritePacket(b[:n]); err == nil && len(icmp) > 0 {
				_, _ = d.Write(icmp)
			}
		}
	})
	wg.Go(func() {
		b := make([]byte, 2000)
		for {
			n, err := conn.ReadPacket(b)
			if err != nil {
				ended <- err
				return
			}
			_, _ = d.Write(b[:n])
		}
	})
	select {
	case <-ctx.Done():
		err = nil
	case err = <-ended:
	}
	conn.Close()
	d.Close()
	wg.Wait()
	return err
}
