// Package testnet holds the loopback fixtures that tests across masqued share:
// certificates, sockets, echo servers and HTTP/3 origins. Every helper
// registers its cleanup with the test, and nothing listens beyond
// 127.0.0.1 and ::1.
package testnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/promscrape"
)

// Loopback addresses tests may use, one per family.
const (
	IPv4 = "127.0.0.1"
	IPv6 = "::1"
)

// Cert is a self-signed certificate for localhost, 127.0.0.1 and ::1, and a
// pool that trusts it.
type Cert struct {
	TLS  tls.Certificate
	PEM  []byte
	Pool *x509.CertPool
}

var (
	certOnce sync.Once
	cert     Cert
	certErr  error
)

// NewCert returns the process's test certificate (made once; key generation
// is the slow part of many tests).
func NewCert(t testing.TB) Cert {
	t.Helper()
	certOnce.Do(func() {
		cert.TLS, cert.PEM, certErr = certs.SelfSigned()
		if certErr == nil {
			cert.Pool, certErr = certs.Pool(cert.PEM)
		}
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return cert
}

// ServerTLS returns a server TLS config with the test certificate.
func (c Cert) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.TLS}}
}

// ClientTLS returns a client TLS config that trusts only the test certificate.
func (c Cert) ClientTLS() *tls.Config { return &tls.Config{RootCAs: c.Pool} }

// UDP returns a UDP socket on host's loopback address, closed at cleanup.
// Its port is free for TCP too when it is made, so that a test's UDP proxy
// and a TCP origin never share a port number: the SSRF policy would take the
// origin for the proxy itself (it refuses the proxy's address:port on both,
// as masqued serves both).
func UDP(t testing.TB, host string) *net.UDPConn {
	t.Helper()
	for range 20 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
		if err != nil {
			t.Fatal(err)
		}
		if portFree("tcp", c.LocalAddr().String()) {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
	}
	t.Fatal("no UDP port free for TCP too")
	return nil
}

// portFree reports whether addr's port can be bound on network now.
func portFree(network, addr string) bool {
	if network == "tcp" {
		l, err := net.Listen(network, addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	}
	c, err := net.ListenPacket(network, addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// TCP returns a TCP listener on host's loopback address, closed at cleanup.
// Its port is free for UDP too when it is made (see UDP).
func TCP(t testing.TB, host string) net.Listener {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		if portFree("udp", l.Addr().String()) {
			t.Cleanup(func() { l.Close() })
			return l
		}
		l.Close()
	}
	t.Fatal("no TCP port free for UDP too")
	return nil
}

// UDPEcho starts a UDP server on host that sends every packet back, and
// returns its address.
func UDPEcho(t testing.TB, host string) *net.UDPAddr {
	t.Helper()
	return udpServer(t, host, 65536, func(pkt []byte, _ netip.AddrPort) []byte { return pkt })
}

// udpServer answers every packet to host with what reply returns, until the
// test ends, and returns its address.
func udpServer(t testing.TB, host string, bufSize int, reply func(pkt []byte, from netip.AddrPort) []byte) *net.UDPAddr {
	t.Helper()
	c := UDP(t, host)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, bufSize)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(reply(buf[:n], from), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr)
}

// TCPEcho starts a TCP server on host that echoes each connection until the
// client half-closes, then half-closes back, and returns its address.
func TCPEcho(t testing.TB, host string) *net.TCPAddr {
	t.Helper()
	return tcpServer(t, host, func(c net.Conn) {
		if _, err := io.Copy(c, c); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	})
}

// tcpServer serves each connection to host with handle, then closes it,
// until the test ends: cleanup closes the listener and open connections and
// waits for every handler. It returns the server's address.
func tcpServer(t testing.TB, host string, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	l := TCP(t, host)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { mu.Lock(); delete(conns, c); mu.Unlock(); c.Close() }()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr)
}

// H3Origin starts an HTTP/3 server on host serving h with the test
// certificate and returns its UDP address. Path MTU discovery stays on, as a
// real origin's would: its probes are what a tunnel must survive.
func H3Origin(t testing.TB, host string, h http.Handler) *net.UDPAddr {
	t.Helper()
	return H3OriginWith(t, host, h, &quic.Config{})
}

// H3OriginWith is H3Origin with the server's QUIC configuration qc, for
// origins unlike a real one's (such as one that does not probe the path MTU).
func H3OriginWith(t testing.TB, host string, h http.Handler, qc *quic.Config) *net.UDPAddr {
	t.Helper()
	c := UDP(t, host)
	srv := &http3.Server{
		Handler:    h,
		TLSConfig:  http3.ConfigureTLSConfig(NewCert(t).ServerTLS()),
		QUICConfig: qc,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(c) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("origin: %v", err)
		}
	})
	return c.LocalAddr().(*net.UDPAddr)
}

// Context returns a context that ends after d or with the test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Metric returns the value of the counter or gauge name in g (for a
// histogram, its sample count), summed over the series whose labels include
// all of labels ("key", "value", …).
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return promscrape.Sum(mfs, name, labels...)
}
