package localproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/masque"
)

// HTTPServer is an HTTP/1.1 proxy that serves CONNECT host:port (any
// protocol, typically TLS) and absolute-form requests for http:// URLs
// through a Tunneler. Other requests get 400 or 405 with a reason; request
// headers past MaxHeaderBytes get 431. Set fields before the first Serve.
// It is safe for concurrent use.
type HTTPServer struct {
	Tunneler Tunneler // required

	// MaxHeaderBytes bounds a request's header; 0 = 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading a request's header; 0 = 10 seconds.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a client connection idle between requests;
	// 0 = 2 minutes.
	IdleTimeout time.Duration
	// DialTimeout bounds opening a tunnel; 0 = 30 seconds.
	DialTimeout time.Duration
	// MaxConns bounds the client connections served at once, per listener;
	// further ones wait to be accepted. 0 = 1024.
	MaxConns int
	// Logger gets one warning per tunnel that failed, with its cause but,
	// unless LogTargets, not its target, and never the client's address;
	// nil = silent.
	Logger *slog.Logger
	// LogTargets adds the target to Logger's records.
	LogTargets bool

	once      sync.Once
	srv       *http.Server
	forward   *httputil.ReverseProxy
	transport *http.Transport
	g         group // CONNECT tunnels, which net/http no longer tracks, and handlers
}

func (s *HTTPServer) init() {
	s.once.Do(func() {
		s.transport = &http.Transport{
			Proxy: nil, // the tunnel is the way out; no further proxy
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ctx, cancel := context.WithTimeout(ctx, orDefault(s.DialTimeout, 30*time.Second))
				defer cancel()
				return s.Tunneler.DialTCP(ctx, addr)
			},
			DisableCompression:  true, // pass the client's Accept-Encoding through as it is
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}
		s.forward = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				// ReverseProxy has already removed the hop-by-hop fields,
				// Proxy-Authorization and Proxy-Connection among them; drop
				// any other Proxy-* field too. No X-Forwarded-For: the
				// client's address is not the origin's business.
				for k := range pr.Out.Header {
					if strings.HasPrefix(k, "Proxy-") {
						delete(pr.Out.Header, k)
					}
				}
			},
			Transport:    s.transport,
			ErrorHandler: s.tunnelError,
			ErrorLog:     slog.NewLogLogger(s.logger().Handler(), slog.LevelDebug),
		}
		s.srv = &http.Server{
			Handler:           http.HandlerFunc(s.serveHTTP),
			MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, 64<<10),
			ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, 10*time.Second),
			IdleTimeout:       orDefault(s.IdleTimeout, 2*time.Minute),
			ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelDebug),
		}
	})
}

// Serve accepts connections on l until Close or Shutdown, and then returns
// http.ErrServerClosed. Like http.Server.Serve, it always closes l.
func (s *HTTPServer) Serve(l net.Listener) error {
	s.init()
	ll := newLimitListener(l, orDefault(s.MaxConns, 1024))
	defer ll.Close()
	if !s.g.addListener(ll) {
		return http.ErrServerClosed
	}
	defer s.g.removeListener(ll)
	return s.srv.Serve(ll)
}

// Close closes the listeners, every connection and tunnel at once, and
// waits for the request handlers to return.
func (s *HTTPServer) Close() error {
	s.init()
	err := s.srv.Close()
	err = errors.Join(err, s.g.close())
	s.transport.CloseIdleConnections()
	return err
}

// Shutdown closes the listeners and waits until the open requests and
// CONNECT tunnels have ended by themselves or ctx is done; then it closes
// what is left. It returns ctx's error if something was cut.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.init()
	err := s.srv.Shutdown(ctx)
	if err == nil {
		err = s.g.wait(ctx)
	}
	return errors.Join(err, s.Close())
}

func (s *HTTPServer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// serveHTTP dispatches one request: CONNECT, absolute-form http://, or a
// clear refusal.
func (s *HTTPServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.g.enter() {
		http.Error(w, "the proxy is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.g.wg.Done()
	switch {
	case r.Method == http.MethodConnect:
		s.connect(w, r)
	case r.URL.Scheme == "http" && r.URL.Host != "":
		s.forward.ServeHTTP(w, r)
	case r.URL.IsAbs():
		http.Error(w, fmt.Sprintf("this proxy forwards http:// URLs only; for %.32q use CONNECT", r.URL.Scheme+"://"), http.StatusBadRequest)
	default:
		// An origin-form request ("GET /"): someone took the proxy for a
		// web server.
		http.Error(w, "this is a proxy: send CONNECT host:port, or an absolute http:// URL", http.StatusBadRequest)
	}
}

// connect opens a TCP tunnel to r's authority, answers 200 and splices the
// client connection to the tunnel.
func (s *HTTPServer) connect(w http.ResponseWriter, r *http.Request) {
	if err := checkAuthority(r.Host); err != nil {
		http.Error(w, "CONNECT needs host:port: "+err.Error(), http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "CONNECT needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), orDefault(s.DialTimeout, 30*time.Second))
	t, err := s.Tunneler.DialTCP(ctx, r.Host)
	cancel()
	if err != nil {
		s.tunnelError(w, r, err)
		return
	}
	defer t.Close()
	if !s.g.track(t) {
		return
	}
	defer s.g.untrack(t)
	c, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	if !s.g.track(c) {
		return
	}
	defer s.g.untrack(c)
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	// Bytes the client sent after its request, without waiting for the 200.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := t.Write(b); err != nil {
			return
		}
	}
	splice(c, t)
}

// checkAuthority accepts host:port with a port from 1 to 65535.
func checkAuthority(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("bad port %.32q", port)
	}
	return nil
}

// tunnelError answers a request whose tunnel could not be opened: with the
// MASQUE proxy's own status and Proxy-Status when it refused (but never 407,
// which would make the client ask for credentials this proxy does not take),
// and with the status the failure maps to otherwise.
func (s *HTTPServer) tunnelError(w http.ResponseWriter, r *http.Request, err error) {
	logFailure(s.logger(), s.LogTargets, "http proxy: tunnel failed", r.Host, err)
	pe, _ := refusal(err)
	if pe == nil {
		masque.WriteError(w, identity, err)
		return
	}
	status := pe.StatusCode
	if status == http.StatusProxyAuthRequired || status < 400 || status > 599 {
		status = http.StatusBadGateway
	}
	if pe.ProxyStatus != "" {
		w.Header().Set("Proxy-Status", pe.ProxyStatus)
	}
	http.Error(w, "the MASQUE proxy refused the tunnel: "+pe.Error(), status)
}
