package h2proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// forwarder forwards plain http:// requests, as an HTTP proxy does for
// browsers: HTTP/1.1 absolute-form requests, and HTTP/2 requests whose
// :authority is another host. Each request opens its own tunnel through the
// core, so authentication, the SSRF policy and egress selection apply to it
// as to CONNECT, and no connection to an origin is shared between clients.
type forwarder struct {
	fronts fronts
	rp     *httputil.ReverseProxy
}

type tunnelConnKey struct{}

func newForwarder(fronts fronts, limits tunnel.Limits) *forwarder {
	tr := &http.Transport{
		// The tunnel is already open: "dialing" hands over its connection.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if c, ok := ctx.Value(tunnelConnKey{}).(net.Conn); ok {
				return c, nil
			}
			return nil, errors.New("h2proxy: forwarded request without a tunnel")
		},
		Proxy:                  nil,
		DisableKeepAlives:      true, // one tunnel per request
		DisableCompression:     true, // pass the client's Accept-Encoding through
		ResponseHeaderTimeout:  limits.IdleTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	f := &forwarder{fronts: fronts}
	f.rp = &httputil.ReverseProxy{
		// Rewrite, unlike Director, adds no X-Forwarded-For: origins must
		// not learn the client's address.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			pr.Out.Host = pr.In.Host
		},
		Transport:     tr,
		FlushInterval: -1, // stream as it arrives
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			fronts.of(r).WriteError(w, &masque.Error{HTTPStatus: http.StatusBadGateway,
				Kind: masque.StatusDestinationUnavailable, Details: "forwarding to the origin failed", Err: err})
		},
	}
	return f
}

// serve forwards r to its origin through a new tunnel.
func (f *forwarder) serve(w http.ResponseWriter, r *http.Request) {
	front := f.fronts.of(r)
	if r.URL.Scheme != "" && r.URL.Scheme != "http" {
		front.WriteError(w, &masque.Error{HTTPStatus: http.StatusBadRequest, Kind: masque.StatusHTTPRequestError,
			Details: "only http:// is forwarded; use CONNECT for " + r.URL.Scheme})
		return
	}
	if r.ProtoMajor == 1 {
		r.Host = r.URL.Host // absolute-form wins over Host (RFC 9112 §3.2.2)
	}
	target, err := masque.ParseAuthority(withDefaultPort(r.Host, "80"))
	if err != nil {
		front.WriteError(w, err)
		return
	}
	t, err := front.Open(r.Context(), r, tunnel.KindTCP, target, &connOf(r).state)
	if err != nil {
		front.WriteError(w, err)
		return
	}
	defer t.Close()
	ctx := context.WithValue(r.Context(), tunnelConnKey{}, t.Conn())
	f.rp.ServeHTTP(w, r.WithContext(ctx))
}

// withDefaultPort adds port to an authority that has none.
func withDefaultPort(authority, port string) string {
	if _, _, err := net.SplitHostPort(authority); err == nil {
		return authority
	}
	if strings.HasPrefix(authority, "[") && strings.HasSuffix(authority, "]") {
		return authority + ":" + port
	}
	return net.JoinHostPort(authority, port)
}

// forwarded reports whether r asks the proxy to forward it rather than
// serve it: HTTP/1.1 absolute-form, or an HTTP/2 :authority that is not the
// proxy.
func forwarded(r *http.Request) bool {
	if r.ProtoMajor == 1 {
		return r.URL.IsAbs()
	}
	return !addressedToSelf(r)
}

// addressedToSelf reports whether r's authority names the proxy: the TLS
// server name the client asked for (whatever the port, which a load balancer
// may change), or the address and port the client connected to. An origin on
// the proxy's IP address but another port is not the proxy.
func addressedToSelf(r *http.Request) bool {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "443"
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || (r.TLS != nil && r.TLS.ServerName != "" && strings.EqualFold(host, r.TLS.ServerName)) {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lh, lp, err := net.SplitHostPort(local.String())
	return err == nil && lh == host && lp == port
}
