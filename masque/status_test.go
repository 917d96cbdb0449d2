package masque_test

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

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
)

// statusError knows its status but carries no header fields.
type statusError int

func (e statusError) Error() string   { return http.StatusText(int(e)) }
func (e statusError) HTTPStatus() int { return int(e) }

func TestStatusOf(t *testing.T) {
	own := &masque.Error{HTTPStatus: http.StatusForbidden, Kind: masque.StatusIPProhibited, Details: "nope"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name   string
		err    error
		status int
		kind   string
		rcode  string
	}{
		{"*Error", own, 403, masque.StatusIPProhibited, ""},
		{"wrapped *Error", fmt.Errorf("opening: %w", own), 403, masque.StatusIPProhibited, ""},
		{"NXDOMAIN", &net.DNSError{Err: "no such host", Name: "a.invalid", IsNotFound: true}, 502, masque.StatusDNSError, "NXDOMAIN"},
		{"DNS timeout", &net.DNSError{Err: "i/o timeout", Name: "a.test", IsTimeout: true}, 504, masque.StatusDNSTimeout, ""},
		{"DNS failure", &net.DNSError{Err: "server misbehaving", Name: "a.test"}, 502, masque.StatusDNSError, "SERVFAIL"},
		{"connection refused", refused, 502, masque.StatusConnectionRefused, ""},
		{"connection refused, joined", errors.Join(errors.New("first address"), refused), 502, masque.StatusConnectionRefused, ""},
		{"network unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, 502, masque.StatusIPUnroutable, ""},
		{"host unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, 502, masque.StatusIPUnroutable, ""},
		{"context deadline", context.DeadlineExceeded, 504, masque.StatusConnectionTimeout, ""},
		{"dial deadline", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, 504, masque.StatusConnectionTimeout, ""},
		{"context canceled", context.Canceled, 502, masque.StatusDestinationUnavailable, ""},
		{"other", errors.New("something"), 502, masque.StatusDestinationUnavailable, ""},
		{"407 with challenge", testnet.ProxyAuthRequired(), 407, masque.StatusHTTPRequestDenied, ""},
		{"403 from authenticator", statusError(403), 403, masque.StatusHTTPRequestDenied, ""},
		{"429 from authenticator", fmt.Errorf("auth: %w", statusError(429)), 429, masque.StatusHTTPRequestDenied, ""},
		{"503 from authenticator", statusError(503), 503, masque.StatusInternalError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e := masque.StatusOf(tt.err)
			if status != tt.status || e.HTTPStatus != tt.status || e.Kind != tt.kind || e.Rcode != tt.rcode {
				t.Fatalf("StatusOf = %d, %+v; want %d %s rcode %q", status, e, tt.status, tt.kind, tt.rcode)
			}
		})
	}
	t.Run("passthrough keeps the same *Error", func(t *testing.T) {
		if _, e := masque.StatusOf(own); e != own {
			t.Fatalf("StatusOf returned %p, want %p", e, own)
		}
	})
	t.Run("cause is kept", func(t *testing.T) {
		if _, e := masque.StatusOf(refused); !errors.Is(e, syscall.ECONNREFUSED) {
			t.Fatalf("%v does not unwrap to ECONNREFUSED", e)
		}
	})
}

func TestProxyStatus(t *testing.T) {
	tests := []struct {
		name     string
		identity string
		e        *masque.Error
		want     string
	}{
		{"kind only", "masqued", &masque.Error{Kind: masque.StatusConnectionRefused},
			`masqued; error=connection_refused`},
		{"rcode and details", "masqued", &masque.Error{Kind: masque.StatusDNSError, Rcode: "NXDOMAIN", Details: "no such host"},
			`masqued; error=dns_error; rcode="NXDOMAIN"; details="no such host"`},
		{"details", "proxy-1", &masque.Error{Kind: masque.StatusIPProhibited, Details: "target is the proxy itself"},
			`proxy-1; error=destination_ip_prohibited; details="target is the proxy itself"`},
		{"quotes and backslashes", "masqued", &masque.Error{Kind: masque.StatusHTTPRequestError, Details: `bad "host" \ here`},
			`masqued; error=http_request_error; details="bad \"host\" \\ here"`},
		{"non-ASCII and controls", "masqued", &masque.Error{Kind: masque.StatusHTTPRequestError, Details: "bücher\r\nx\x7f\ty"},
			`masqued; error=http_request_error; details="b??cher??x??y"`},
		{"success with details", "masqued", &masque.Error{Details: "egress 192.0.2.1"},
			`masqued; details="egress 192.0.2.1"`},
		{"printable edges", "masqued", &masque.Error{Kind: masque.StatusHTTPRequestError, Details: " ~"},
			`masqued; error=http_request_error; details=" ~"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := masque.ProxyStatus(tt.identity, tt.e); got != tt.want {
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
		{"prohibited", &masque.Error{HTTPStatus: 403, Kind: masque.StatusIPProhibited, Details: "loopback"}, 403,
			`masqued; error=destination_ip_prohibited; details="loopback"`, nil, "destination_ip_prohibited: loopback\n"},
		{"407 challenge", fmt.Errorf("auth: %w", testnet.ProxyAuthRequired()), 407,
			`masqued; error=http_request_denied`, testnet.ProxyAuthRequired().Header(), "http_request_denied\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			e := masque.WriteError(w, "masqued", tt.err)
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
	e := &masque.Error{Kind: masque.StatusDNSError, Details: "lookup failed", Err: errors.New("no such host")}
	if got, want := e.Error(), "dns_error: lookup failed: no such host"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := (&masque.Error{Kind: masque.StatusConnectionLimit}).Error(), "connection_limit_reached"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}
