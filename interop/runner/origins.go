package runner

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/certs"
)

const (
	// largeSize is what large-transfer fetches.
	largeSize = 100_000_000
	// manyTunnels is how many tunnels many-tunnels holds open at once.
	manyTunnels = 200
	// holdTimeout is how long the origin holds a many-tunnels request
	// waiting for the others.
	holdTimeout = 60 * time.Second
)

// origins are the servers the cells reach through the proxies, on 127.0.0.1
// in the runner's process: plain HTTP/1.1, HTTPS (HTTP/2 and HTTP/1.1),
// HTTP/3, and a UDP echo. Every request names its cell in the path
// (/CELL/...) and every echo packet starts with "CELL ", so that a cell can
// ask which addresses its traffic came from.
type origins struct {
	caFile                string // the origins' certificate, PEM
	http, https, h3, echo netip.AddrPort
	httpSrv, httpsSrv     *http.Server
	h3Srv                 *http3.Server
	tcpLns                []net.Listener
	udp                   []net.PacketConn
	wg                    sync.WaitGroup
	largeSum              [sha256.Size]byte
	mu                    sync.Mutex // guards seen and holds
	seen                  map[string][]netip.AddrPort
	holds                 map[string]*hold
}

func startOrigins(dir string) (*origins, error) {
	cert, pemBytes, err := certs.SelfSigned()
	if err != nil {
		return nil, err
	}
	o := &origins{caFile: filepath.Join(dir, "origin-ca.pem"), seen: map[string][]netip.AddrPort{}, holds: map[string]*hold{}}
	if err := os.WriteFile(o.caFile, pemBytes, 0o644); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(largeBody(), largeSize)); err != nil {
		return nil, err
	}
	h.Sum(o.largeSum[:0])

	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	quiet := log.New(io.Discard, "", 0) // clients that hang up mid-handshake are no news
	o.httpSrv = &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	o.httpsSrv = &http.Server{Handler: o, TLSConfig: tlsConf.Clone(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	// No path MTU probes: masque-go's proxy ends a tunnel when a datagram
	// from the target does not fit, and probes are such datagrams.
	o.h3Srv = &http3.Server{Handler: o, TLSConfig: http3.ConfigureTLSConfig(tlsConf.Clone()), QUICConfig: &quic.Config{DisablePathMTUDiscovery: true}}
	for _, s := range []struct {
		addr  *netip.AddrPort
		serve func(net.Listener) error
	}{
		{&o.http, o.httpSrv.Serve},
		{&o.https, func(l net.Listener) error { return o.httpsSrv.ServeTLS(l, "", "") }},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, err
		}
		o.tcpLns = append(o.tcpLns, l)
		*s.addr = l.Addr().(*net.TCPAddr).AddrPort()
		o.wg.Go(func() { _ = s.serve(l) })
	}
	for _, s := range []struct {
		addr  *netip.AddrPort
		serve func(net.PacketConn)
	}{
		{&o.h3, func(pc net.PacketConn) { _ = o.h3Srv.Serve(pc) }},
		{&o.echo, o.serveEcho},
	} {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, err
		}
		o.udp = append(o.udp, pc)
		*s.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		o.wg.Go(func() { s.serve(pc) })
	}
	return o, nil
}

func (o *origins) close() {
	o.httpSrv.Close()
	o.httpsSrv.Close()
	o.h3Srv.Close()
	for _, l := range o.tcpLns {
		l.Close()
	}
	for _, pc := range o.udp {
		pc.Close()
	}
	o.wg.Wait()
}

// largeBody is the bytes large-transfer fetches: a seeded random stream, so
// that a shifted or repeated part never checks out.
func largeBody() io.Reader { return rand.NewChaCha8([32]byte{'m', 'a', 's', 'q', 'u', 'e'}) }

// hello is the body of /CELL/hello, over proto ("http", "https" or "h3").
func hello(cell, proto string) string { return "hello " + cell + " over " + proto + "\n" }

// subResourceText is what /CELL/sub.js writes into the page.
const subResourceText = "the sub-resource ran"

func (o *origins) note(cell, remote string) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return
	}
	o.mu.Lock()
	o.seen[cell] = append(o.seen[cell], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	o.mu.Unlock()
}

// saw returns the source addresses of the cell's requests and packets.
func (o *origins) saw(cell string) []netip.AddrPort {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]netip.AddrPort(nil), o.seen[cell]...)
}

// ServeHTTP serves /CELL/hello, /CELL/page and /CELL/sub.js (a page and the
// script it loads), /CELL/large and /CELL/hold/N (held until manyTunnels of
// the cell's requests are in at once); /CELL/alt/X serves X with an Alt-Svc
// header naming the HTTP/3 origin.
func (o *origins) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cell, what, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	o.note(cell, r.RemoteAddr)
	if rest, ok := strings.CutPrefix(what, "alt/"); ok {
		// How a browser learns that the origin speaks HTTP/3 (RFC 7838).
		w.Header().Set("Alt-Svc", fmt.Sprintf(`h3=":%d"; ma=600`, o.h3.Port()))
		what = rest
	}
	proto := "http"
	switch {
	case r.ProtoMajor == 3:
		proto = "h3"
	case r.TLS != nil:
		proto = "https"
	}
	switch {
	case what == "hello":
		io.WriteString(w, hello(cell, proto))
	case what == "page":
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<!doctype html><html><body><p id=m>%s</p><p id=s>no sub-resource</p><script src=\"sub.js\"></script></body></html>", strings.TrimSpace(hello(cell, proto)))
	case what == "sub.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "document.getElementById('s').textContent = %q;\n", subResourceText)
	case what == "large":
		w.Header().Set("Content-Length", fmt.Sprint(largeSize))
		io.Copy(w, io.LimitReader(largeBody(), largeSize))
	case strings.HasPrefix(what, "hold/"):
		if err := o.hold(r.Context(), cell); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, hello(cell, proto))
	default:
		http.NotFound(w, r)
	}
}

// hold is a barrier: requests wait until manyTunnels have arrived.
type hold struct {
	n    int
	full chan struct{}
}

func (o *origins) hold(ctx context.Context, cell string) error {
	o.mu.Lock()
	h := o.holds[cell]
	if h == nil {
		h = &hold{full: make(chan struct{})}
		o.holds[cell] = h
	}
	if h.n++; h.n == manyTunnels {
		close(h.full)
	}
	n := h.n
	o.mu.Unlock()
	if n > manyTunnels {
		return fmt.Errorf("request %d, want %d", n, manyTunnels)
	}
	t := time.NewTimer(holdTimeout)
	defer t.Stop()
	select {
	case <-h.full:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		o.mu.Lock()
		n = h.n
		o.mu.Unlock()
		return fmt.Errorf("only %d of %d requests arrived at once in %v", n, manyTunnels, holdTimeout)
	}
}

// serveEcho answers every packet "CELL ..." with itself.
func (o *origins) serveEcho(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if cell, _, ok := strings.Cut(string(buf[:n]), " "); ok {
			o.note(cell, from.String())
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
