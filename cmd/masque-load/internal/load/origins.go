package load

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/certs"
)

// Origins are the targets the load runs against when none are given: a TCP
// echo, a UDP echo and an HTTP/3 server, on one loopback address. They are
// small on purpose: the proxy, not the origin, should be what saturates.
type Origins struct {
	TCP, UDP, H3 string      // host:port of each
	TLS          *tls.Config // trusts the HTTP/3 origin's certificate

	tcp   net.Listener
	udp   net.PacketConn
	h3pc  net.PacketConn
	h3    *http3.Server
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{} // open echo connections; guarded by mu
	done  bool                  // Close has run; guarded by mu
}

// StartOrigins starts the origins on host (such as 127.0.0.1).
func StartOrigins(host string) (_ *Origins, err error) {
	cert, pemBytes, err := certs.SelfSigned()
	if err != nil {
		return nil, err
	}
	pool, err := certs.Pool(pemBytes)
	if err != nil {
		return nil, err
	}
	o := &Origins{TLS: &tls.Config{RootCAs: pool}, conns: map[net.Conn]struct{}{}}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	addr := net.JoinHostPort(host, "0")
	if o.tcp, err = net.Listen("tcp", addr); err != nil {
		return nil, err
	}
	if o.udp, err = net.ListenPacket("udp", addr); err != nil {
		return nil, err
	}
	if o.h3pc, err = net.ListenPacket("udp", addr); err != nil {
		return nil, err
	}
	o.TCP, o.UDP, o.H3 = o.tcp.Addr().String(), o.udp.LocalAddr().String(), o.h3pc.LocalAddr().String()
	o.h3 = &http3.Server{
		Handler:   http.HandlerFunc(serveBytes),
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
	}
	o.wg.Go(o.acceptTCP)
	o.wg.Go(o.echoUDP)
	o.wg.Go(func() { _ = o.h3.Serve(o.h3pc) })
	return o, nil
}

// Close stops the origins and waits for their goroutines.
func (o *Origins) Close() error {
	var errs []error
	if o.h3 != nil {
		errs = append(errs, o.h3.Close())
	}
	for _, c := range []io.Closer{o.tcp, o.udp, o.h3pc} { // interfaces: nil if not opened
		if c != nil {
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	o.mu.Lock()
	o.done = true
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
	return errors.Join(errs...)
}

// acceptTCP echoes each connection until the client half-closes, then
// half-closes back.
func (o *Origins) acceptTCP() {
	for {
		c, err := o.tcp.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		if o.done {
			o.mu.Unlock()
			c.Close()
			return
		}
		o.conns[c] = struct{}{}
		o.mu.Unlock()
		o.wg.Go(func() {
			defer func() { o.mu.Lock(); delete(o.conns, c); o.mu.Unlock(); c.Close() }()
			if _, err := io.CopyBuffer(onlyWriter{c}, onlyReader{c}, make([]byte, echoBuffer)); err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
			}
		})
	}
}

// echoBuffer is each TCP echo connection's buffer: small, as thousands of
// idle tunnels each hold one.
const echoBuffer = 4 << 10

// onlyReader and onlyWriter hide a TCP connection's ReadFrom and WriteTo, so
// that the echo copies through its buffer: io.Copy between two TCP conns
// splices through a pipe that each blocked copy keeps, and 10,000 idle
// tunnels ran the tool out of file descriptors that way.
type (
	onlyReader struct{ io.Reader }
	onlyWriter struct{ io.Writer }
)

// echoUDP sends every packet back where it came from.
func (o *Origins) echoUDP() {
	buf := make([]byte, 65536)
	for {
		n, addr, err := o.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = o.udp.WriteTo(buf[:n], addr)
	}
}

// zeros is what the HTTP/3 origin serves.
var zeros = make([]byte, 64<<10)

// serveBytes answers GET /?n=N with N bytes (default 1).
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n := int64(1)
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		m, err := w.Write(zeros[:min(n, int64(len(zeros)))])
		if err != nil {
			return
		}
		n -= int64(m)
	}
}
