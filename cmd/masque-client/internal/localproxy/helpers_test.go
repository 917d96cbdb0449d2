package localproxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// recorder is a Tunneler that passes every call on to a real client and
// notes the targets, so tests can see what reached the MASQUE proxy (a name
// or an address).
type recorder struct {
	Tunneler
	delay   time.Duration // before each DialTCP, to make a slow proxy
	mu      sync.Mutex    // guards targets
	targets []string
}

func (r *recorder) note(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets = append(r.targets, target)
}

func (r *recorder) DialTCP(ctx context.Context, target string) (net.Conn, error) {
	r.note("tcp " + target)
	time.Sleep(r.delay)
	return r.Tunneler.DialTCP(ctx, target)
}

func (r *recorder) ListenUDP(ctx context.Context, target string) (net.PacketConn, error) {
	r.note("udp " + target)
	return r.Tunneler.ListenUDP(ctx, target)
}

// seen returns the targets so far.
func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.targets...)
}

// env is a real masqued proxy on loopback, a client connected to it, and
// the entry point's two servers on it.
type env struct {
	proxy   *proxytest.Proxy
	tun     *recorder
	socks   *SOCKS5Server
	httpSrv *HTTPServer
	// Where the servers listen.
	socksAddr, httpAddr string
}

// start runs the stack on host's loopback address. allowPrivate is the
// proxy's policy for loopback targets; configure, if not nil, adjusts the
// servers before they start.
func start(t testing.TB, host string, allowPrivate bool, configure func(*env)) *env {
	t.Helper()
	p := proxytest.StartH3(t, host, allowPrivate)
	return startOn(t, host, p, dialProxy(t, p.URL, &client.Dialer{}), configure)
}

// dialProxy connects to proxyURL over HTTP/3 with d, trusting the test
// certificate, until the test ends.
func dialProxy(t testing.TB, proxyURL string, d *client.Dialer) *client.Conn {
	t.Helper()
	d.TLSConfig, d.Transport = testnet.NewCert(t).ClientTLS(), client.HTTP3
	c, err := d.Dial(testnet.Context(t, 10*time.Second), proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startOn runs the entry point's servers on host over c, a connection to
// p (the last proxy of a chain).
func startOn(t testing.TB, host string, p *proxytest.Proxy, c *client.Conn, configure func(*env)) *env {
	t.Helper()
	e := &env{proxy: p, tun: &recorder{Tunneler: c}}
	e.socks = &SOCKS5Server{Tunneler: e.tun}
	e.httpSrv = &HTTPServer{Tunneler: e.tun}
	if configure != nil {
		configure(e)
	}
	e.socksAddr = serve(t, host, e.socks)
	e.httpAddr = serve(t, host, e.httpSrv)
	return e
}

// server is what SOCKS5Server and HTTPServer have in common.
type server interface {
	Serve(net.Listener) error
	Close() error
}

// serve runs s on a listener on host until the test ends, and returns the
// listener's address.
func serve(t testing.TB, host string, s server) string {
	t.Helper()
	l := testnet.TCP(t, host)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String()
}

// origin is a plain HTTP origin on 127.0.0.1 that answers "hello PATH" and
// counts the requests that arrived.
type origin struct {
	*httptest.Server
	mu     sync.Mutex // guards paths and header
	paths  []string
	header http.Header // of the last request
}

func newOrigin(t *testing.T, tls bool) *origin {
	o := &origin{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.paths = append(o.paths, r.URL.Path)
		o.header = r.Header.Clone()
		o.mu.Unlock()
		w.Write([]byte("hello " + r.URL.Path))
	})
	if tls {
		o.Server = httptest.NewUnstartedServer(h)
		o.TLS = testnet.NewCert(t).ServerTLS()
		o.StartTLS()
	} else {
		o.Server = httptest.NewServer(h)
	}
	t.Cleanup(o.Close)
	return o
}

func (o *origin) lastHeader() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.header
}

func (o *origin) arrived() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.paths...)
}
