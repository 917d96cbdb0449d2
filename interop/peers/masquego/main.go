// Command masquego wraps github.com/quic-go/masque-go, the reference Go
// implementation of CONNECT-UDP (RFC 9298), as a standalone process so that
// masqued's interop tests and benchmarks can run it as a peer: "proxy" is a
// masque-go CONNECT-UDP proxy, "client" fetches an https URL over HTTP/3 inside
// a masque-go tunnel (QUIC inside QUIC).
//
// It lives in its own module because it pins masque-go v0.5.0 together with
// quic-go v0.62.0: with quic-go >= v0.64 masque-go's proxy no longer sees the
// scheme and host in the request URL and answers every request with 400.
//
// The origin behind the proxy must disable path MTU discovery: masque-go
// tears a tunnel down as soon as a UDP packet from the target does not fit
// into a DATAGRAM frame of the client<->proxy connection ("DATAGRAM frame too
// large"), which is exactly what the origin's PMTU probes provoke.
//
// Usage:
//
//	masquego proxy  [-listen ADDR] [-cert FILE -key FILE] [-cert-out FILE] [-template T] [-strict-host]
//	masquego client -template T [-ca FILE] [-origin-ca FILE] [-insecure] [-o FILE] [-n N] [-disable-pmtud] URL
//	masquego udp    -template T [-ca FILE] [-insecure] [-n N] [-prefix P] HOST:PORT
//
// "udp" sends N packets "P packet I" through a tunnel to a UDP echo server
// and checks that each comes back: CONNECT-UDP without QUIC inside.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/masque-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/yosida95/uritemplate/v3"
)

// outerPacketSize is the initial packet size of the outer (client<->proxy)
// QUIC connection; it must leave room for a full-size inner QUIC packet plus
// the DATAGRAM framing, exactly as masque-go's own Transport default does.
const outerPacketSize = 1350

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd, err := "", errors.New("usage: masquego proxy|client|udp [flags] (-h for each subcommand's flags)")
	if len(os.Args) > 1 {
		switch cmd = os.Args[1]; cmd {
		case "proxy":
			err = runProxy(ctx, os.Args[2:], os.Stdout)
		case "client":
			err = runClient(ctx, os.Args[2:], os.Stdout, os.Stderr)
		case "udp":
			err = runUDP(ctx, os.Args[2:], os.Stdout)
		}
	}
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", strings.TrimSpace("masquego "+cmd), err)
		os.Exit(1)
	}
}

// runProxy serves CONNECT-UDP until ctx is done. It writes exactly one line,
// "listening on ADDR", to stdout once the UDP socket is bound.
func runProxy(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("masquego proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on")
	certFile := fs.String("cert", "", "PEM certificate (default: generate a self-signed one)")
	keyFile := fs.String("key", "", "PEM private key for -cert")
	certOut := fs.String("cert-out", "", "write the generated self-signed certificate (PEM) here")
	tmplStr := fs.String("template", "", "CONNECT-UDP URI template (default https://localhost:PORT/.well-known/masque/udp/{target_host}/{target_port}/)")
	strictHost := fs.Bool("strict-host", false, "require :authority to equal the template's host (masque-go's own check); by default only the path is matched")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cert tls.Certificate
	var err error
	switch {
	case *certFile != "" || *keyFile != "":
		if cert, err = tls.LoadX509KeyPair(*certFile, *keyFile); err != nil {
			return err
		}
	default:
		var certPEM []byte
		if cert, certPEM, err = selfSignedCert(); err != nil {
			return err
		}
		if *certOut != "" {
			if err := os.WriteFile(*certOut, certPEM, 0o644); err != nil {
				return err
			}
		}
	}
	conn, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *tmplStr == "" {
		*tmplStr = fmt.Sprintf("https://localhost:%d/.well-known/masque/udp/{target_host}/{target_port}/", conn.LocalAddr().(*net.UDPAddr).Port)
	}
	handler, err := newProxyHandler(*tmplStr, *strictHost)
	if err != nil {
		return err
	}
	server := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		// quic-go's default of 100 concurrent streams would cap tunnels per
		// client connection at 100; a deployment raises it, as masqued does.
		QUICConfig:      &quic.Config{EnableDatagrams: true, InitialPacketSize: outerPacketSize, MaxIncomingStreams: 10000},
		EnableDatagrams: true,
		Handler:         handler,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(conn) }()
	fmt.Fprintf(stdout, "listening on %s\n", conn.LocalAddr())
	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
	handler.proxy.Close() // terminates all tunnels; they would block a graceful shutdown
	server.Close()
	if err == nil {
		err = <-serveErr
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		err = nil
	}
	return err
}

type proxyHandler struct {
	proxy      masque.Proxy
	tmpl       *uritemplate.Template
	rest       string // the template after "https://HOST", for -strict-host=false
	strictHost bool
}

func newProxyHandler(tmplStr string, strictHost bool) (*proxyHandler, error) {
	tmpl, err := uritemplate.New(tmplStr)
	if err != nil {
		return nil, fmt.Errorf("invalid template: %w", err)
	}
	if !slices.Contains(tmpl.Varnames(), "target_host") || !slices.Contains(tmpl.Varnames(), "target_port") {
		return nil, fmt.Errorf("template %q needs {target_host} and {target_port}", tmplStr)
	}
	u, err := url.Parse(tmplStr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("template %q must be an absolute https URI with a literal host", tmplStr)
	}
	prefix := u.Scheme + "://" + u.Host
	if !strings.HasPrefix(tmplStr, prefix) {
		return nil, fmt.Errorf("template %q: cannot split off %q", tmplStr, prefix)
	}
	return &proxyHandler{tmpl: tmpl, rest: tmplStr[len(prefix):], strictHost: strictHost}, nil
}

func (h *proxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tmpl := h.tmpl
	if !h.strictHost {
		// masque-go rejects any :authority that differs from the template's
		// host; substitute the request's so that e.g. localhost vs 127.0.0.1
		// does not matter and only the path has to match.
		t, err := uritemplate.New("https://" + r.Host + h.rest)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		tmpl = t
	}
	req, err := masque.ParseProxyRequest(r, tmpl)
	if err != nil {
		status := http.StatusBadRequest
		if perr, ok := errors.AsType[*masque.ProxyRequestParseError](err); ok {
			status = perr.HTTPStatus
		}
		log.Printf("rejecting %s %s (%s): %d %v", r.Method, r.URL, r.Host, status, err)
		w.WriteHeader(status)
		return
	}
	if err := h.proxy.Proxy(w, req); err != nil {
		log.Printf("proxying to %s: %v", req.Target, err)
	}
}

// runClient fetches the URL given as the only positional argument through a
// CONNECT-UDP tunnel and prints one statistics line per fetch to stderr.
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("masquego client", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: masquego client -template T [flags] https://HOST[:PORT]/PATH")
		fs.PrintDefaults()
	}
	tmplStr := fs.String("template", "", "the proxy's CONNECT-UDP URI template (required)")
	caFile := fs.String("ca", "", "PEM certificate(s) to trust for the proxy")
	originCAFile := fs.String("origin-ca", "", "PEM certificate(s) to trust for the origin (default: -ca)")
	insecure := fs.Bool("insecure", false, "skip certificate verification of proxy and origin")
	outFile := fs.String("o", "", "write the response body here (default stdout)")
	count := fs.Int("n", 1, "fetch the URL this many times, sequentially, over the same tunnel")
	disablePMTUD := fs.Bool("disable-pmtud", false, "disable path MTU discovery on the inner QUIC connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tmplStr == "" || fs.NArg() != 1 || *count < 1 {
		return errors.New("usage: masquego client -template T [flags] https://HOST[:PORT]/PATH")
	}
	if *originCAFile == "" {
		*originCAFile = *caFile
	}
	target, err := url.Parse(fs.Arg(0))
	if err != nil || target.Scheme != "https" || target.Host == "" {
		return fmt.Errorf("invalid URL %q: need https://HOST[:PORT]/PATH", fs.Arg(0))
	}
	port := target.Port()
	if port == "" {
		port = "443"
	}
	raddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(target.Hostname(), port))
	if err != nil {
		return err
	}
	originTLS, err := clientTLS(*originCAFile, *insecure)
	if err != nil {
		return err
	}
	originTLS.ServerName = target.Hostname()
	proxy, err := dialProxy(ctx, *tmplStr, *caFile, *insecure)
	if err != nil {
		return err
	}
	defer proxy.Close()
	pconn, err := proxy.open(ctx, raddr)
	if err != nil {
		return err
	}
	defer pconn.Close()
	qt := &quic.Transport{Conn: tunnelConn{pconn}}
	defer qt.Close()
	h3 := &http3.Transport{
		TLSClientConfig: originTLS,
		QUICConfig:      &quic.Config{DisablePathMTUDiscovery: *disablePMTUD},
		Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			return qt.DialEarly(ctx, raddr, tlsConf, conf)
		},
	}
	defer h3.Close()
	hc := &http.Client{Transport: h3}

	out, f := stdout, (*os.File)(nil)
	if *outFile != "" {
		if f, err = os.Create(*outFile); err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	for range *count {
		start := time.Now()
		getReq, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(getReq)
		if err != nil {
			return fmt.Errorf("GET %s: %w", target, err)
		}
		n, err := io.Copy(out, resp.Body)
		resp.Body.Close()
		secs := time.Since(start).Seconds()
		if err != nil {
			return fmt.Errorf("reading body of %s after %d bytes: %w", target, n, err)
		}
		fmt.Fprintf(stderr, "bytes=%d seconds=%.6f mbit_per_s=%.3f status=%d\n", n, secs, float64(n)*8/secs/1e6, resp.StatusCode)
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: status %s", target, resp.Status)
		}
	}
	if f != nil {
		return f.Close()
	}
	return nil
}

// proxyConn is one QUIC connection to a CONNECT-UDP proxy, on which
// tunnels open.
type proxyConn struct {
	qconn *quic.Conn
	cc    *masque.ClientConn
	tmpl  *uritemplate.Template
}

// dialProxy connects to the proxy that tmplStr names, trusting caFile.
func dialProxy(ctx context.Context, tmplStr, caFile string, insecure bool) (*proxyConn, error) {
	tmpl, err := uritemplate.New(tmplStr)
	if err != nil {
		return nil, fmt.Errorf("invalid template: %w", err)
	}
	// The part before the first variable names the proxy.
	u, err := url.Parse(strings.SplitN(tmplStr, "{", 2)[0])
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid template %q: no proxy host", tmplStr)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	proxyTLS, err := clientTLS(caFile, insecure)
	if err != nil {
		return nil, err
	}
	proxyTLS.NextProtos = []string{http3.NextProtoH3}
	qconn, err := quic.DialAddr(ctx, addr, proxyTLS, &quic.Config{EnableDatagrams: true, InitialPacketSize: outerPacketSize})
	if err != nil {
		return nil, fmt.Errorf("connecting to the proxy: %w", err)
	}
	cc, err := (&masque.Transport{}).NewClientConn(qconn)
	if err != nil {
		qconn.CloseWithError(0, "")
		return nil, err
	}
	return &proxyConn{qconn: qconn, cc: cc, tmpl: tmpl}, nil
}

// open opens a CONNECT-UDP tunnel to raddr.
func (p *proxyConn) open(ctx context.Context, raddr *net.UDPAddr) (*masque.Conn, error) {
	req, err := masque.NewRequest(ctx, p.tmpl, raddr.String())
	if err != nil {
		return nil, err
	}
	pconn, rsp, err := p.cc.Dial(req)
	if err != nil {
		if rsp != nil {
			err = fmt.Errorf("%w (Proxy-Status: %q)", err, rsp.Header.Values("Proxy-Status"))
		}
		return nil, fmt.Errorf("opening CONNECT-UDP tunnel to %s: %w", raddr, err)
	}
	return pconn, nil
}

// Close closes the connection and its tunnels.
func (p *proxyConn) Close() error { return p.qconn.CloseWithError(0, "") }

// runUDP opens -tunnels CONNECT-UDP tunnels to a UDP echo server on one
// connection to the proxy, all open at once, and sends -n packets through
// each, checking that each comes back (a lost one is sent again a few
// times). It prints "echoed N" when all have.
func runUDP(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("masquego udp", flag.ContinueOnError)
	usage := "usage: masquego udp -template T [flags] HOST:PORT"
	fs.Usage = func() { fmt.Fprintln(fs.Output(), usage); fs.PrintDefaults() }
	tmplStr := fs.String("template", "", "the proxy's CONNECT-UDP URI template (required)")
	caFile := fs.String("ca", "", "PEM certificate(s) to trust for the proxy")
	insecure := fs.Bool("insecure", false, "skip certificate verification of the proxy")
	count := fs.Int("n", 10, "packets to send through each tunnel")
	tunnels := fs.Int("tunnels", 1, "tunnels to open at once")
	prefix := fs.String("prefix", "masquego", "what each packet starts with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tmplStr == "" || fs.NArg() != 1 || *count < 1 || *tunnels < 1 {
		return errors.New(usage)
	}
	raddr, err := net.ResolveUDPAddr("udp", fs.Arg(0))
	if err != nil {
		return err
	}
	proxy, err := dialProxy(ctx, *tmplStr, *caFile, *insecure)
	if err != nil {
		return err
	}
	defer proxy.Close()
	conns := make([]*masque.Conn, *tunnels)
	errs := make([]error, *tunnels)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { conns[i], errs[i] = proxy.open(ctx, raddr) })
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Every tunnel is open now: each echoes its packets.
	for t, c := range conns {
		wg.Go(func() { errs[t] = echo(ctx, c, raddr, fmt.Sprintf("%s tunnel %d", *prefix, t), *count) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "echoed %d\n", *count**tunnels)
	return nil
}

// echo sends n packets "prefix packet I" through c to raddr and waits for
// each to come back.
func echo(ctx context.Context, c *masque.Conn, raddr *net.UDPAddr, prefix string, n int) error {
	buf := make([]byte, 2048)
	for i := range n {
		payload := fmt.Sprintf("%s packet %d", prefix, i)
		echoed := false
		for try := 0; try < 5 && !echoed && ctx.Err() == nil; try++ {
			if _, err := c.WriteTo([]byte(payload), raddr); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := c.ReadFrom(buf)
			echoed = err == nil && string(buf[:m]) == payload
		}
		if !echoed {
			return fmt.Errorf("%s packet %d did not come back", prefix, i)
		}
	}
	return nil
}

// tunnelConn is the tunnel as a net.PacketConn for the inner QUIC transport.
// It has no kernel socket buffers, so the buffer setters are no-ops; they
// exist only to keep quic-go from logging a spurious buffer-size warning.
type tunnelConn struct{ *masque.Conn }

func (tunnelConn) SetReadBuffer(int) error  { return nil }
func (tunnelConn) SetWriteBuffer(int) error { return nil }

func clientTLS(caFile string, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{InsecureSkipVerify: insecure}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
		}
	}
	return conf, nil
}

// selfSignedCert returns an ECDSA P-256 certificate for localhost, 127.0.0.1
// and ::1 that is its own CA (so it can be used directly as a trust root),
// together with the certificate's PEM encoding.
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}
