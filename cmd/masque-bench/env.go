package main

import (
	"context"
	"crypto/tls"
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
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
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

// reader reads the payload once through.
func (p payload) reader() io.Reader { return &payloadReader{p: p} }

type payloadReader struct {
	p   payload
	off int64
}

func (r *payloadReader) Read(b []byte) (int, error) {
	if r.off >= r.p.size {
		return 0, io.EOF
	}
	at := r.off % int64(len(r.p.block))
	n := copy(b[:min(int64(len(b)), r.p.size-r.off)], r.p.block[at:])
	r.off += int64(n)
	return n, nil
}

// checkUpload answers a POST of the payload: 200 if the body is the
// payload, 400 saying what arrived if not.
func (p payload) checkUpload(w http.ResponseWriter, r *http.Request) {
	sum := crc32.New(castagnoli)
	n, err := io.Copy(sum, r.Body)
	switch {
	case err != nil:
		http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
	case n != p.size || sum.Sum32() != p.sum:
		http.Error(w, fmt.Sprintf("got %d bytes with CRC-32C %08x, want %d bytes with %08x", n, sum.Sum32(), p.size, p.sum), http.StatusBadRequest)
	}
}

// env is what the cases run against: origins inside the bench, and the
// proxies they need.
type env struct {
	payload   payload
	cert      tls.Certificate // the origins', and the in-process proxy's
	originTLS *tls.Config     // trusts cert
	h3Origin  *net.UDPAddr
	tcpOrigin *net.TCPAddr
	tlsOrigin *net.TCPAddr
	proxies   map[string]*proxy
	relay     *proxy        // masqued -relay-to masqued, for the two-hop case
	origins   *proc.Process // nil when they run inside the bench

	dir            string // the bench's files: programs, certificates, downloads
	originCertFile string // the origins' certificate, PEM

	stops []func() error // in start order
}

// proxy is a MASQUE proxy that cases go through.
type proxy struct {
	url      string        // https://127.0.0.1:PORT
	fwdURL   string        // masqued's: its -forward-listen listener, which offers forwarded mode
	template string        // its CONNECT-UDP template; "" = the default
	tls      *tls.Config   // trusts its certificate
	certFile string        // its certificate, PEM
	proc     *proc.Process // nil inside the bench
}

// setUp builds the proxies' programs, starts them, and starts the origins.
func setUp(ctx context.Context, o options, cs []benchCase) (_ *env, err error) {
	e := &env{payload: newPayload(o.size), proxies: map[string]*proxy{}}
	defer func() {
		if err != nil { // e, not the nil that the failing return sets
			err = errors.Join(err, e.close())
		}
	}()
	var certPEM []byte
	if e.cert, certPEM, err = certs.SelfSigned(); err != nil {
		return nil, err
	}
	pool, err := certs.Pool(certPEM)
	if err != nil {
		return nil, err
	}
	e.originTLS = &tls.Config{RootCAs: pool}
	if e.dir, err = os.MkdirTemp("", "masque-bench-"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() error { return os.RemoveAll(e.dir) })
	e.originCertFile = filepath.Join(e.dir, "origin.pem")
	if err := os.WriteFile(e.originCertFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	if o.inProcess {
		if e.h3Origin, err = e.startH3Origin(); err != nil {
			return nil, err
		}
		if e.tcpOrigin, err = e.startTCPOrigin(nil); err != nil {
			return nil, err
		}
		if e.tlsOrigin, err = e.startTCPOrigin(e.serverTLS()); err != nil {
			return nil, err
		}
	} else if err := e.startOriginProcess(o.size); err != nil {
		return nil, fmt.Errorf("starting the origins: %w", err)
	}
	for _, c := range cs {
		if c.via == direct || e.proxies[c.via] != nil {
			continue
		}
		var p *proxy
		switch {
		case c.via == masqueGo:
			p, err = e.startMasqueGo(ctx)
		case o.inProcess:
			p, err = e.startInProcess()
		default:
			p, err = e.startMasqued(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", c.via, err)
		}
		e.proxies[c.via] = p
	}
	for _, c := range cs {
		if !c.relay || e.relay != nil {
			continue
		}
		egress := e.proxies[c.via]
		t, err := masque.ParseAuthority(strings.TrimPrefix(egress.url, "https://"))
		if err != nil {
			return nil, err
		}
		if o.inProcess {
			e.relay, err = e.startInProcess(t)
		} else {
			e.relay, err = e.startRelay(ctx, t)
		}
		if err != nil {
			return nil, fmt.Errorf("starting the relay to %s: %w", c.via, err)
		}
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
func (e *env) startH3Origin() (*net.UDPAddr, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	srv := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{e.cert}}),
		QUICConfig: &quic.Config{DisablePathMTUDiscovery: true},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				e.payload.checkUpload(w, r)
				return
			}
			e.payload.WriteTo(w)
		}),
	}
	e.serve(func() error { return srv.Serve(pc) }, func() error { return errors.Join(srv.Close(), pc.Close()) })
	return pc.LocalAddr().(*net.UDPAddr), nil
}

// serverTLS is the origins' TLS configuration.
func (e *env) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{e.cert}}
}

// startTCPOrigin sends the payload on every connection, then closes it;
// with tlsConf, over TLS.
func (e *env) startTCPOrigin(tlsConf *tls.Config) (*net.TCPAddr, error) {
	tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	addr := tl.Addr().(*net.TCPAddr)
	var l net.Listener = tl
	if tlsConf != nil {
		l = tls.NewListener(tl, tlsConf)
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
	return addr, nil
}

// startInProcess runs masqued's proxy inside the bench, HTTP/3 and the
// HTTP/2 front on one port, configured as `masqued -allow-private-targets`
// would be, metrics included, with the origins' certificate. With relayTo,
// it is an ingress relay to those egress proxies instead, as `masqued
// -relay-to` would be.
func (e *env) startInProcess(relayTo ...masque.Target) (*proxy, error) {
	metrics, err := tunnel.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	tl, err := net.Listen("tcp", addr.String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	core, err := tunnel.New(tunnel.Config{
		Policy:  tunnel.Policy{AllowPrivate: len(relayTo) == 0, RelayTo: relayTo, SelfPorts: []netip.AddrPort{addr.AddrPort()}},
		Metrics: metrics,
	})
	if err != nil {
		pc.Close()
		tl.Close()
		return nil, err
	}
	srv := &h3proxy.Server{Proxy: core, TLSConfig: e.serverTLS()}
	if len(relayTo) > 0 {
		srv.QUICConfig = h3proxy.RelayQUICConfig()
	}
	e.serve(func() error { return srv.Serve(pc) }, func() error { return errors.Join(srv.Close(), pc.Close()) })
	h2 := &h2proxy.Server{Proxy: core, TLSConfig: e.serverTLS()}
	e.serve(func() error { return h2.Serve(tl) }, h2.Close)
	fpc, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		return nil, err
	}
	fs := tunnel.NewForwardSocket(fpc, metrics)
	fsrv := &h3proxy.Server{Proxy: core, TLSConfig: e.serverTLS()}
	e.serve(func() error { return fsrv.Serve(fs) }, func() error { return errors.Join(fsrv.Close(), fs.Close()) })
	return &proxy{url: "https://" + addr.String(), fwdURL: "https://" + fs.LocalAddr().String(), tls: e.originTLS, certFile: e.originCertFile}, nil
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

// Where the proxies' programs are, relative to the repository root.
var (
	masquedDir  = filepath.Join("cmd", "masqued")
	masqueGoDir = filepath.Join("interop", "peers", "masquego")
)

// startMasqueGo starts masque-go's proxy. Its program has its client too.
func (e *env) startMasqueGo(ctx context.Context) (*proxy, error) {
	certFile := filepath.Join(e.dir, "masquego.pem")
	p, addr, err := e.startProgram(ctx, masqueGoDir, "proxy", "-listen", "127.0.0.1:0", "-cert-out", certFile)
	if err != nil {
		return nil, err
	}
	return newProxy(p, addr, "/.well-known/masque/udp/{target_host}/{target_port}/", certFile)
}

// startMasqued starts masqued.
func (e *env) startMasqued(ctx context.Context) (*proxy, error) {
	p, addr, err := e.startProgram(ctx, masquedDir, "-listen", "127.0.0.1:0", "-forward-listen", "127.0.0.1:0",
		"-allow-private-targets", "-cert-out", filepath.Join(e.dir, "masqued.pem"))
	if err != nil {
		return nil, err
	}
	certFile, err := p.Line("certificate ")
	if err != nil {
		return nil, err
	}
	fwd, err := p.Line("forwarding on ")
	if err != nil {
		return nil, err
	}
	px, err := newProxy(p, addr, "", certFile)
	if err == nil {
		px.fwdURL = "https://" + fwd
	}
	return px, err
}

// startRelay starts a second masqued, an ingress relay that tunnels only
// to egress (-relay-to), with the production policy for every other target.
func (e *env) startRelay(ctx context.Context, egress masque.Target) (*proxy, error) {
	p, addr, err := e.startProgram(ctx, masquedDir, "-listen", "127.0.0.1:0", "-relay-to", egress.String(),
		"-cert-out", filepath.Join(e.dir, "relay.pem"))
	if err != nil {
		return nil, err
	}
	certFile, err := p.Line("certificate ")
	if err != nil {
		return nil, err
	}
	return newProxy(p, addr, "", certFile)
}

// startProgram builds the program in dir, unless it has already, and
// starts it with args until close, which stops it with SIGTERM and expects
// it to exit 0. It returns the process and the address that its first
// line, "listening on ADDR", gives.
func (e *env) startProgram(ctx context.Context, dir string, args ...string) (*proc.Process, string, error) {
	bin, err := e.program(ctx, dir)
	if err != nil {
		return nil, "", err
	}
	p, err := proc.Start(context.Background(), bin, args...)
	if err != nil {
		return nil, "", err
	}
	e.stops = append(e.stops, p.Stop)
	addr, err := p.Line("listening on ")
	return p, addr, err
}

// program returns the program in dir, built into the bench's directory the
// first time it is asked for.
func (e *env) program(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(e.dir, filepath.Base(dir))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	return bin, proc.GoBuild(ctx, dir, bin)
}

// newProxy describes the proxy process p at addr whose certificate is in
// certFile. A non-empty templatePath is its CONNECT-UDP template's path.
func newProxy(p *proc.Process, addr, templatePath, certFile string) (*proxy, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool, err := certs.Pool(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	px := &proxy{url: "https://" + addr, tls: &tls.Config{RootCAs: pool}, certFile: certFile, proc: p}
	if templatePath != "" {
		px.template = px.url + templatePath
	}
	return px, nil
}
