package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/tunnel"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// loopback is the only address the bench uses.
var loopback = net.IPv4(127, 0, 0, 1)

// payload is what every origin sends: a pseudo-random block, repeated up to
// size bytes.
type payload struct {
	block []byte
	size  int64
	sum   uint32 // CRC-32C of all size bytes
}

func newPayload(size int64) payload {
	p := payload{block: make([]byte, 1<<20), size: size}
	rand.NewChaCha8([32]byte{}).Read(p.block)
	h := crc32.New(castagnoli)
	p.WriteTo(h)
	p.sum = h.Sum32()
	return p
}

// WriteTo writes the payload to w.
func (p payload) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for n < p.size {
		m, err := w.Write(p.block[:min(int64(len(p.block)), p.size-n)])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// env is what the cases run against: origins inside the bench, and the
// proxies they need.
type env struct {
	payload   payload
	originTLS *tls.Config // trusts the origins' certificate
	h3Origin  *net.UDPAddr
	tcpOrigin *net.TCPAddr
	proxies   map[string]*proxy

	stops []func() error // in start order
}

// proxy is a MASQUE proxy that cases go through.
type proxy struct {
	url      string      // https://127.0.0.1:PORT
	template string      // its CONNECT-UDP template; "" = the default
	tls      *tls.Config // trusts its certificate
}

// setUp builds the proxies' programs, starts them, and starts the origins.
func setUp(ctx context.Context, o options, cs []benchCase) (e *env, err error) {
	e = &env{payload: newPayload(o.size), proxies: map[string]*proxy{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.close())
		}
	}()
	cert, certPEM, err := certs.SelfSigned()
	if err != nil {
		return nil, err
	}
	pool, err := certs.Pool(certPEM)
	if err != nil {
		return nil, err
	}
	e.originTLS = &tls.Config{RootCAs: pool}
	if e.h3Origin, err = e.startH3Origin(cert); err != nil {
		return nil, err
	}
	if e.tcpOrigin, err = e.startTCPOrigin(); err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "masque-bench-")
	if err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() error { return os.RemoveAll(binDir) })
	for _, c := range cs {
		if c.via == direct || e.proxies[c.via] != nil {
			continue
		}
		var p *proxy
		switch {
		case c.via == masqueGo:
			p, err = e.startMasqueGo(ctx, binDir)
		case o.inProcess:
			p, err = e.startInProcess()
		default:
			p, err = e.startMasqued(ctx, binDir)
		}
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", c.via, err)
		}
		e.proxies[c.via] = p
	}
	return e, nil
}

// close stops everything setUp started, last first. It is safe to call more
// than once.
func (e *env) close() error {
	var errs []error
	for i := len(e.stops) - 1; i >= 0; i-- {
		errs = append(errs, e.stops[i]())
	}
	e.stops = nil
	return errors.Join(errs...)
}

// startH3Origin serves the payload over HTTP/3. Path MTU discovery is off:
// masque-go's proxy closes a whole tunnel when one datagram from the target
// does not fit the client connection, and PMTU probes are such datagrams.
// All HTTP/3 cases share this origin, so they compare like with like.
func (e *env) startH3Origin(cert tls.Certificate) (*net.UDPAddr, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	srv := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		QUICConfig: &quic.Config{DisablePathMTUDiscovery: true},
		Handler:    http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { e.payload.WriteTo(w) }),
	}
	e.serve(func() error { return srv.Serve(pc) }, func() error { return errors.Join(srv.Close(), pc.Close()) })
	return pc.LocalAddr().(*net.UDPAddr), nil
}

// startTCPOrigin sends the payload on every connection, then closes it.
func (e *env) startTCPOrigin() (*net.TCPAddr, error) {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	e.serve(func() error {
		defer wg.Wait()
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			wg.Go(func() {
				e.payload.WriteTo(c)
				c.Close()
			})
		}
	}, l.Close)
	return l.Addr().(*net.TCPAddr), nil
}

// startInProcess runs masqued's HTTP/3 proxy inside the bench, configured
// as `masqued -allow-private-targets` would be, metrics included.
func (e *env) startInProcess() (*proxy, error) {
	metrics, err := tunnel.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	cert, certPEM, err := certs.SelfSigned()
	if err != nil {
		return nil, err
	}
	pool, err := certs.Pool(certPEM)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	core, err := tunnel.New(tunnel.Config{
		Policy:  tunnel.Policy{AllowPrivate: true, SelfPorts: []netip.AddrPort{addr.AddrPort()}},
		Metrics: metrics,
	})
	if err != nil {
		pc.Close()
		return nil, err
	}
	srv := &h3proxy.Server{Proxy: core, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	e.serve(func() error { return srv.Serve(pc) }, func() error { return errors.Join(srv.Close(), pc.Close()) })
	return &proxy{url: "https://" + addr.String(), tls: &tls.Config{RootCAs: pool}}, nil
}

// serve runs serveFn in a goroutine until stop; close then calls stop and
// waits for serveFn, whose error after stop is the expected one.
func (e *env) serve(serveFn, stop func() error) {
	done := make(chan error, 1)
	go func() { done <- serveFn() }()
	e.stops = append(e.stops, func() error {
		err := stop()
		if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, net.ErrClosed) {
			err = errors.Join(err, serveErr)
		}
		return err
	})
}

// startMasqueGo builds and starts masque-go's proxy, the peer program in
// interop/peers/masquego.
func (e *env) startMasqueGo(ctx context.Context, binDir string) (*proxy, error) {
	bin, err := goBuild(ctx, filepath.Join("interop", "peers", "masquego"), binDir, "masquego")
	if err != nil {
		return nil, err
	}
	certFile := filepath.Join(binDir, "masquego.pem")
	p, err := e.startProcess(bin, "proxy", "-listen", "127.0.0.1:0", "-cert-out", certFile)
	if err != nil {
		return nil, err
	}
	addr, err := p.line("listening on ")
	if err != nil {
		return nil, err
	}
	return newProxy(addr, "/.well-known/masque/udp/{target_host}/{target_port}/", certFile)
}

// startMasqued builds and starts masqued.
func (e *env) startMasqued(ctx context.Context, binDir string) (*proxy, error) {
	bin, err := goBuild(ctx, filepath.Join("cmd", "masqued"), binDir, "masqued")
	if err != nil {
		return nil, err
	}
	p, err := e.startProcess(bin, "-listen", "127.0.0.1:0", "-allow-private-targets", "-cert-out", filepath.Join(binDir, "masqued.pem"))
	if err != nil {
		return nil, err
	}
	addr, err := p.line("listening on ")
	if err != nil {
		return nil, err
	}
	certFile, err := p.line("certificate ")
	if err != nil {
		return nil, err
	}
	return newProxy(addr, "", certFile)
}

// newProxy describes the proxy at addr whose certificate is in certFile.
// A non-empty templatePath is its CONNECT-UDP template's path.
func newProxy(addr, templatePath, certFile string) (*proxy, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", certFile)
	}
	p := &proxy{url: "https://" + addr, tls: &tls.Config{RootCAs: pool}}
	if templatePath != "" {
		p.template = p.url + templatePath
	}
	return p, nil
}
