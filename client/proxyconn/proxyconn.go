// Package proxyconn holds what the client sides of masqued's fronts
// (client/h3 over QUIC, client/h2 over TLS+TCP) share about a connection to a
// proxy and the tunnels over it: a proxy's refusal as an error, proxy
// authorization (masque.Authorizer) with one retry after a 407, the UDP
// tunnel as a net.PacketConn (UDPConn), and HTTP/3 to an origin through one.
// Keeping it here means a token pool or any other Authorizer works with either
// transport, and a UDP tunnel behaves the same over both.
//
// It is public because the types client/h3, client/h2 and client return are
// its own (their UDPConn, ProxyError and the certificate and refusal errors
// are aliases), and because a client side for another transport would be
// built on the same helpers. The types and errors are stable; the helpers a
// client side is built on (Do, NewProxy, ExpandUDP and the like) may change
// before v1.0.
package proxyconn

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/masqued/masqued/masque"
)

// ProxyError is a proxy's refusal of a tunnel: its status, Proxy-Status and,
// on a 407, its challenges.
type ProxyError struct {
	StatusCode  int
	ProxyStatus string   // the Proxy-Status header, if any
	Challenges  []string // the Proxy-Authenticate field values, if any
}

func (e *ProxyError) Error() string {
	s := "proxy answered " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	if e.ProxyStatus != "" {
		s += " (" + e.ProxyStatus + ")"
	}
	return s
}

// Refusal returns the ProxyError for a non-2xx response.
func Refusal(resp *http.Response) *ProxyError {
	return &ProxyError{
		StatusCode:  resp.StatusCode,
		ProxyStatus: resp.Header.Get("Proxy-Status"),
		Challenges:  resp.Header.Values("Proxy-Authenticate"),
	}
}

// Do runs attempt, a tunnel request carrying the Proxy-Authorization value
// it is given, with authorization from a (nil for none). When the proxy
// answers 407, it asks a for credentials for the challenges and tries once
// more: a second 407 means the credentials were refused.
func Do[T any](ctx context.Context, a masque.Authorizer, attempt func(authorization string) (T, error)) (T, error) {
	if a == nil {
		return attempt("")
	}
	var challenges []string
	for try := 0; ; try++ {
		authz, err := a.Authorize(ctx, challenges)
		if err != nil {
			var zero T
			return zero, &AuthError{Err: err}
		}
		v, err := attempt(authz)
		var pe *ProxyError
		if try > 0 || !errors.As(err, &pe) || pe.StatusCode != http.StatusProxyAuthRequired {
			return v, err
		}
		challenges = pe.Challenges
	}
}

// SetRequestHeader adds a tunnel request's caller-given fields (extra, such
// as a Sec-CH-Geohash hint) where the client has not set the field itself,
// then Proxy-Authorization unless authz is empty.
func SetRequestHeader(req *http.Request, extra http.Header, authz string) {
	for k, vs := range extra {
		k = http.CanonicalHeaderKey(k)
		if _, set := req.Header[k]; !set && k != "Proxy-Authorization" {
			req.Header[k] = slices.Clone(vs)
		}
	}
	if authz != "" {
		req.Header.Set("Proxy-Authorization", authz)
	}
}

// AuthError reports that the Authorizer failed to supply credentials.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return "proxy authorization: " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }
