package load

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/masqued/masqued/client/proxyconn"
)

// errMismatch is an echo that did not send back what was sent.
var errMismatch = errors.New("echo answered with other bytes")

// errStatus is an origin's non-200 answer in h3 mode.
type errStatus int

func (e errStatus) Error() string { return "origin answered " + strconv.Itoa(int(e)) }

// Class names the kind of an error for the report's breakdown: a proxy's
// refusal as its status and Proxy-Status error type ("502
// connection_refused"), else a coarse class of the Go error: auth, timeout,
// refused, reset, eof, closed, mismatch, origin NNN or other.
func Class(err error) string {
	var pe *proxyconn.ProxyError
	var ae *proxyconn.AuthError
	var ne net.Error
	var status errStatus
	switch {
	case errors.As(err, &pe):
		s := strconv.Itoa(pe.StatusCode)
		if kind := proxyStatusError(pe.ProxyStatus); kind != "" {
			s += " " + kind
		}
		return s
	case errors.As(err, &ae):
		return "auth"
	case errors.As(err, &status):
		return "origin " + strconv.Itoa(int(status))
	case errors.Is(err, errMismatch):
		return "mismatch"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "other"
}

// proxyStatusError returns the error parameter of a Proxy-Status field
// (RFC 9209), such as dns_error in `masqued; error=dns_error; rcode=…`, or
// "" if there is none. With several intermediaries, the first that names an
// error counts.
func proxyStatusError(field string) string {
	for member := range strings.SplitSeq(field, ",") {
		for param := range strings.SplitSeq(member, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
			if ok && strings.TrimSpace(k) == "error" {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	return ""
}
