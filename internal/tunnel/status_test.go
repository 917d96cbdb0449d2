package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"

	"github.com/masqued/masqued/internal/tunnel"
)

// challengeError is an Authenticator's refusal as privacypass makes it:
// a status and header fields, without importing the core.
type challengeError struct {
	status int
	header http.Header
}

func (e *challengeError) Error() string       { return "authentication required" }
func (e *challengeError) HTTPStatus() int     { return e.status }
func (e *challengeError) Header() http.Header { return e.header }

func proxyAuthRequired() *challengeError {
	return &challengeError{status: http.StatusProxyAuthRequired, header: http.Header{
		"Proxy-Authenticate": {`PrivateToken challenge="AAIAAA==", token-key="AAAA"`},
	}}
}

// statusError knows its status but carries no header fields.
type statusError int

func (e statusError) Error() string   { return http.StatusText(int(e)) }
func (e statusError) HTTPStatus() int { return int(e) }

func TestStatusOf(t *testing.T) {
	own := &tunnel.Error{HTTPStatus: http.StatusForbidden, Kind: tunnel.StatusIPProhibited, Details: "nope"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name   string
		err    error
		status int
		kind   string
		rcode  string
	}{
		{"*Error", own, 403, tunnel.StatusIPProhibited, ""},
		{"wrapped *Error", fmt.Errorf("opening: %w", own), 403, tunnel.StatusIPProhibited, ""},
		{"NXDOMAIN", &net.DNSError{Err: "no such host", Name: "a.invalid", IsNotFound: true}, 502, tunnel.StatusDNSError, "NXDOMAIN"},
		{"DNS timeout", &net.DNSError{Err: "i/o timeout", Name: "a.test", IsTimeout: true}, 504, tunnel.StatusDNSTimeout, ""},
		{"DNS failure", &net.DNSError{Err: "server misbehaving", Name: "a.test"}, 502, tunnel.StatusDNSError, "SERVFAIL"},
		{"connection refused", refused, 502, tunnel.StatusConnectionRefused, ""},
		{"connection refused, joined", errors.Join(errors.New("first address"), refused), 502, tunnel.StatusConnectionRefused, ""},
		{"network unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, 502, tunnel.StatusIPUnroutable, ""},
		{"host unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, 502, tunnel.StatusIPUnroutable, ""},
		{"context deadline", context.DeadlineExceeded, 504, tunnel.StatusConnectionTimeout, ""},
		{"dial deadline", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, 504, tunnel.StatusConnectionTimeout, ""},
		{"context canceled", context.Canceled, 502, tunnel.StatusDestinationUnavailable, ""},
		{"other", errors.New("something"), 502, tunnel.StatusDestinationUnavailable, ""},
		{"407 with challenge", proxyAuthRequired(), 407, tunnel.StatusHTTPRequestDenied, ""},
		{"403 from authenticator", statusError(403), 403, tunnel.StatusHTTPRequestDenied, ""},
		{"429 from authenticator", fmt.Errorf("auth: %w", statusError(429)), 429, tunnel.StatusHTTPRequestDenied, ""},
		{"503 from authenticator", statusError(503), 503, tunnel.StatusInternalError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e := tunnel.StatusOf(tt.err)
			if status != tt.status || e.HTTPStatus != tt.status || e.Kind != tt.kind || e.Rcode != tt.rcode {
				t.Fatalf("StatusOf = %d, %+v; want %d %s rcode %q", status, e, tt.status, tt.kind, tt.rcode)
			}
		})
	}
	t.Run("passthrough keeps the same *Error", func(t *testing.T) {
		if _, e := tunnel.StatusOf(own); e != own {
			t.Fatalf("StatusOf returned %p, want %p", e, own)
		}
	})
	t.Run("cause is kept", func(t *testing.T) {
		if _, e := tunnel.StatusOf(refused); !errors.Is(e, syscall.ECONNREFUSED) {
			t.Fatalf("%v does not unwrap to ECONNREFUSED", e)
		}
	})
}

func TestProxyStatus(t *testing.T) {
	tests := []struct {
		name     string
		identity string
		e        *tunnel.Error
		want     string
	}{
		{"kind only", "masqued", &tunnel.Error{Kind: tunnel.StatusConnectionRefused},
			`masqued; error=connection_refused`},
		{"rcode and details", "masqued", &tunnel.Error{Kind: tunnel.StatusDNSError, Rcode: "NXDOMAIN", Details: "no such host"},
			`masqued; error=dns_error; rcode="NXDOMAIN"; details="no such host"`},
		{"details", "proxy-1", &tunnel.Error{Kind: tunnel.StatusIPProhibited, Details: "target is the proxy itself"},
			`proxy-1; error=destination_ip_prohibited; details="target is the proxy itself"`},
		{"quotes and backslashes", "masqued", &tunnel.Error{Kind: tunnel.StatusHTTPRequestError, Details: `bad "host" \ here`},
			`masqued; error=http_request_error; details="bad \"host\" \\ here"`},
		{"non-ASCII and controls", "masqued", &tunnel.Error{Kind: tunnel.StatusHTTPRequestError, Details: "bücher\r\nx\x7f\ty"},
			`masqued; error=http_request_error; details="b??cher??x??y"`},
		{"printable edges", "masqued", &tunnel.Error{Kind: tunnel.StatusHTTPRequestError, Details: " ~"},
			`masqued; error=http_request_error; details=" ~"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tunnel.ProxyStatus(tt.identity, tt.e); got != tt.want {
				t.Fatalf("ProxyStatus =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		status      int
		proxyStatus string
		header      http.Header // extra fields expected
		body        string
	}{
		{"NXDOMAIN", &net.DNSError{Err: "no such host", Name: "a.invalid", IsNotFound: true}, 502,
			`masqued; error=dns_error; rcode="NXDOMAIN"`, nil, "dns_error\n"},
		{"prohibited", &tunnel.Error{HTTPStatus: 403, Kind: tunnel.StatusIPProhibited, Details: "loopback"}, 403,
			`masqued; error=destination_ip_prohibited; details="loopback"`, nil, "destination_ip_prohibited: loopback\n"},
		{"407 challenge", fmt.Errorf("auth: %w", proxyAuthRequired()), 407,
			`masqued; error=http_request_denied`, proxyAuthRequired().header, "http_request_denied\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			e := tunnel.WriteError(w, "masqued", tt.err)
			res := w.Result()
			if res.StatusCode != tt.status || e.HTTPStatus != tt.status {
				t.Fatalf("status %d (returned %d), want %d", res.StatusCode, e.HTTPStatus, tt.status)
			}
			if got := res.Header.Get("Proxy-Status"); got != tt.proxyStatus {
				t.Fatalf("Proxy-Status = %q, want %q", got, tt.proxyStatus)
			}
			for k, vs := range tt.header {
				if got := res.Header.Values(k); len(got) != len(vs) || got[0] != vs[0] {
					t.Fatalf("%s = %q, want %q", k, got, vs)
				}
			}
			if got := res.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Fatalf("Content-Type = %q", got)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Fatalf("X-Content-Type-Options = %q", got)
			}
			if got := w.Body.String(); got != tt.body {
				t.Fatalf("body = %q, want %q", got, tt.body)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &tunnel.Error{Kind: tunnel.StatusDNSError, Details: "lookup failed", Err: errors.New("no such host")}
	if got, want := e.Error(), "dns_error: lookup failed: no such host"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := (&tunnel.Error{Kind: tunnel.StatusConnectionLimit}).Error(), "connection_limit_reached"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}
