package masque

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// Proxy-Status error types (RFC 9209 §2.3) that the core produces.
const (
	StatusDNSTimeout             = "dns_timeout"
	StatusDNSError               = "dns_error"
	StatusDestinationNotFound    = "destination_not_found"
	StatusDestinationUnavailable = "destination_unavailable"
	StatusIPProhibited           = "destination_ip_prohibited"
	StatusIPUnroutable           = "destination_ip_unroutable"
	StatusConnectionRefused      = "connection_refused"
	StatusConnectionTimeout      = "connection_timeout"
	StatusConnectionLimit        = "connection_limit_reached"
	StatusHTTPRequestError       = "http_request_error"
	StatusHTTPRequestDenied      = "http_request_denied"
	StatusInternalError          = "proxy_internal_error"
)

// Error is a failure with its HTTP meaning attached once, where it is known:
// the response status and the RFC 9209 error type for the Proxy-Status header.
type Error struct {
	HTTPStatus int    // e.g. 400, 403, 502
	Kind       string // RFC 9209 error type, e.g. "dns_error"
	Details    string // short, human-readable; never holds client identity
	Rcode      string // DNS response code for dns_error, e.g. "NXDOMAIN"
	Err        error  // the cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	if e.Details != "" {
		b.WriteString(": ")
		b.WriteString(e.Details)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// BadRequest returns a 400 http_request_error for a malformed tunnel request.
func BadRequest(details string, err error) *Error {
	return &Error{HTTPStatus: http.StatusBadRequest, Kind: StatusHTTPRequestError, Details: details, Err: err}
}

// HTTPStatuser is implemented by errors that know their HTTP status, such as
// an Authenticator's refusals. It lets packages outside the core (privacypass)
// choose a status without importing the core.
type HTTPStatuser interface{ HTTPStatus() int }

// Headerer is implemented by errors that carry response header fields, such as
// a 407's Proxy-Authenticate challenge.
type Headerer interface{ Header() http.Header }

// StatusOf maps err to an HTTP status and an *Error describing it for the
// Proxy-Status header. It is the one place where causes become statuses.
func StatusOf(err error) (int, *Error) {
	var te *Error
	if errors.As(err, &te) {
		return te.HTTPStatus, te
	}
	var hs HTTPStatuser
	if errors.As(err, &hs) {
		kind := StatusHTTPRequestDenied
		if hs.HTTPStatus() >= 500 {
			kind = StatusInternalError
		}
		return hs.HTTPStatus(), &Error{HTTPStatus: hs.HTTPStatus(), Kind: kind}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		switch {
		case dnsErr.IsTimeout:
			return http.StatusGatewayTimeout, &Error{HTTPStatus: http.StatusGatewayTimeout, Kind: StatusDNSTimeout, Err: err}
		case dnsErr.IsNotFound:
			return http.StatusBadGateway, &Error{HTTPStatus: http.StatusBadGateway, Kind: StatusDNSError, Rcode: "NXDOMAIN", Err: err}
		default:
			// A resolver that knows the answer's code says so (REFUSED,
			// say); Go's own does not, and SERVFAIL is the nearest.
			rcode := "SERVFAIL"
			var rc interface{ DNSRcode() string }
			if errors.As(err, &rc) {
				rcode = rc.DNSRcode()
			}
			return http.StatusBadGateway, &Error{HTTPStatus: http.StatusBadGateway, Kind: StatusDNSError, Rcode: rcode, Err: err}
		}
	}
	e := &Error{HTTPStatus: http.StatusBadGateway, Err: err}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Kind = StatusConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		e.Kind = StatusIPUnroutable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		e.HTTPStatus, e.Kind = http.StatusGatewayTimeout, StatusConnectionTimeout
	case errors.Is(err, context.Canceled):
		e.Kind = StatusDestinationUnavailable
	default:
		e.Kind = StatusDestinationUnavailable
	}
	return e.HTTPStatus, e
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// ProxyStatus formats e as a Proxy-Status field value (RFC 9209) for a proxy
// named identity. An e without a Kind describes a success: its entry carries
// only the details.
func ProxyStatus(identity string, e *Error) string {
	var b strings.Builder
	b.WriteString(identity)
	if e.Kind != "" {
		b.WriteString("; error=")
		b.WriteString(e.Kind)
	}
	if e.Rcode != "" {
		b.WriteString("; rcode=")
		b.WriteString(sfString(e.Rcode))
	}
	if e.Details != "" {
		b.WriteString("; details=")
		b.WriteString(sfString(e.Details))
	}
	return b.String()
}

// ValidIdentity reports whether s can name a proxy in Proxy-Status: a
// Structured Field token (RFC 8941 §3.3.4), ALPHA or "*", then tchar, ":" or
// "/", as the first member of the field must be (RFC 9209 §2).
func ValidIdentity(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !alpha && c != '*' {
			return false
		}
		if !alpha && (c < '0' || c > '9') && !strings.ContainsRune("!#$%&'*+-.^_`|~:/", rune(c)) {
			return false
		}
	}
	return s != ""
}

// sfString quotes s as a Structured Field sf-string (RFC 8941 §3.3.3):
// printable ASCII only (anything else becomes '?'), with '"' and '\' escaped.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteError answers a tunnel request that failed with err: the mapped status,
// a Proxy-Status header, any header fields the error carries (for example a
// 407's Proxy-Authenticate), and a one-line plain-text reason.
func WriteError(w http.ResponseWriter, identity string, err error) *Error {
	status, e := StatusOf(err)
	h := w.Header()
	var hd Headerer
	if errors.As(err, &hd) {
		for k, vs := range hd.Header() {
			h[k] = append(h[k], vs...)
		}
	}
	h.Set("Proxy-Status", ProxyStatus(identity, e))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	msg := e.Kind
	if e.Details != "" {
		msg += ": " + e.Details
	}
	_, _ = w.Write([]byte(msg + "\n"))
	return e
}
