package tunnel

import "net/http"

// Authenticator decides whether a request may open a tunnel. It is the seam
// for pluggable authentication (Privacy Pass, bearer tokens, chains of those).
//
// Authenticate returns nil to admit r. To refuse, it returns an error; if the
// error has an HTTPStatus() int method that status is answered (407 with a
// challenge, 403, 429, …), otherwise 403. If the error has a
// Header() http.Header method, those fields are added to the response, which
// is how a 407 carries Proxy-Authenticate. Only standard-library types appear
// here so implementations need not import this package.
//
// Authenticate is called concurrently and must not retain r.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// AuthenticatorFunc adapts a function to an Authenticator.
type AuthenticatorFunc func(r *http.Request) error

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) error { return f(r) }
