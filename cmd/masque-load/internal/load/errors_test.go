package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/masqued/masqued/client/proxyconn"
)

func TestClass(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&proxyconn.ProxyError{StatusCode: 502, ProxyStatus: "masqued; error=connection_refused"}, "502 connection_refused"},
		{fmt.Errorf("opening: %w", &proxyconn.ProxyError{StatusCode: 502, ProxyStatus: `masqued; error=dns_error; rcode="NXDOMAIN"`}), "502 dns_error"},
		{&proxyconn.ProxyError{StatusCode: 407, Challenges: []string{"PrivateToken challenge=x"}}, "407"},
		{&proxyconn.ProxyError{StatusCode: 403, ProxyStatus: "masqued"}, "403"},
		{&proxyconn.AuthError{Err: errors.New("pool empty")}, "auth"},
		{errStatus(404), "origin 404"},
		{errMismatch, "mismatch"},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("%w (%w)", context.DeadlineExceeded, net.ErrClosed), "timeout"},
		{os.ErrDeadlineExceeded, "timeout"},
		{opErr(syscall.ECONNREFUSED), "refused"},
		{opErr(syscall.ECONNRESET), "reset"},
		{opErr(syscall.EPIPE), "reset"},
		{io.EOF, "eof"},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), "eof"},
		{net.ErrClosed, "closed"},
		{errors.New("something else"), "other"},
	} {
		if got := Class(tc.err); got != tc.want {
			t.Errorf("Class(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestProxyStatusError(t *testing.T) {
	for field, want := range map[string]string{
		"":                                   "",
		"masqued":                            "",
		"masqued; error=dns_timeout":         "dns_timeout",
		`masqued; error="dns_error"`:         "dns_error",
		"masqued;error=connection_refused;x": "connection_refused",
		"origin-proxy; error=http_request_error, masqued": "http_request_error",
		"masqued, edge; error=connection_timeout":         "connection_timeout",
		"masqued; errors=foo":                             "",
		"masqued; error":                                  "",
	} {
		if got := proxyStatusError(field); got != want {
			t.Errorf("proxyStatusError(%q) = %q, want %q", field, got, want)
		}
	}
}
