package testnet

import "net/http"

// Refusal is an authenticator's 407 as privacypass and internal/auth make
// one: an error with a status and header fields, which the tunnel core
// (through masque.StatusOf and WriteError) answers without knowing its type.
type Refusal struct{ header http.Header }

// ProxyAuthRequired returns a 407 refusal with a PrivateToken challenge.
func ProxyAuthRequired() *Refusal {
	return &Refusal{header: http.Header{
		"Proxy-Authenticate": {`PrivateToken challenge="AAIAAA==", token-key="AAAA"`},
	}}
}

func (e *Refusal) Error() string       { return "authentication required" }
func (e *Refusal) HTTPStatus() int     { return http.StatusProxyAuthRequired }
func (e *Refusal) Header() http.Header { return e.header }
