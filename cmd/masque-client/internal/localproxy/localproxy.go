// Package localproxy is masque-client's local entry point: a SOCKS5 server
// (RFC 1928) and an HTTP proxy that applications on this machine already
// know how to use, which carry every connection they accept through a MASQUE
// proxy instead of the local network: TCP in CONNECT tunnels, UDP in
// CONNECT-UDP tunnels, all multiplexed over the one connection of a
// Tunneler. Host names are passed to the MASQUE proxy unresolved, so that it
// resolves them (the local resolver learns nothing) and applies its policy.
//
// The servers are shaped like net/http's: Serve runs on a listener the caller
// owns, Close stops at once, Shutdown drains. Every goroutine they start is
// waited for by Close.
package localproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque"
)

// Tunneler opens tunnels through a MASQUE proxy; *client.Conn is one, over
// HTTP/3 or HTTP/2. Both methods must be safe for concurrent use and must
// return once ctx is done. A refusal by the proxy should be an error that
// errors.As finds as a *proxyconn.ProxyError,
// so that its status and Proxy-Status reach the local client.
type Tunneler interface {
	// DialTCP opens a CONNECT tunnel to target ("host:port"). The conn's
	// CloseWrite, if it has one, half-closes the tunnel.
	DialTCP(ctx context.Context, target string) (net.Conn, error)
	// ListenUDP opens a CONNECT-UDP tunnel to target ("host:port"): every
	// packet written goes to target, whatever address WriteTo is given.
	ListenUDP(ctx context.Context, target string) (net.PacketConn, error)
}

// identity names the entry point in the Proxy-Status it writes.
const identity = "masque-client"

// logFailure records a tunnel that could not be opened, at warning level: a
// user of the entry point should learn of failures without asking for
// more. The target goes in only withTarget (the owner's choice, as with
// masque-client -v), and is scrubbed from the cause otherwise, so that the
// log does not keep where this machine's users went.
func logFailure(l *slog.Logger, withTarget bool, msg, target string, err error, attrs ...any) {
	cause := err.Error()
	if withTarget {
		attrs = append(attrs, "target", target)
	} else {
		cause = strings.ReplaceAll(cause, target, "the target")
		// A name alone too; an address alone may be the proxy's as well.
		if host, _, err := net.SplitHostPort(target); err == nil && host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				cause = strings.ReplaceAll(cause, host, "the target")
			}
		}
	}
	l.Warn(msg, append(attrs, "error", cause)...)
}

// halfCopier copies one direction of a spliced connection and passes the
// end of its source on as a half-close. It is a named type so that stack
// traces say which goroutine is which. (tunnel.Tunnel.Relay is the core's
// copier, but it belongs to a *tunnel.Tunnel, with the proxy's limits and
// metrics; here both sides are plain net.Conns, and io.Copy is all it takes.)
type halfCopier struct{ dst, src net.Conn }

func (c halfCopier) run() error {
	if _, err := io.Copy(c.dst, c.src); err != nil {
		return err
	}
	if cw, ok := c.dst.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// splice relays between a and b until both directions have ended or one
// fails; a failure closes both, so that the other direction stops too. The
// caller closes a and b afterwards.
func splice(a, b net.Conn) error {
	errc := make(chan error, 2) // room for both: neither copier may block on it
	go func() { errc <- halfCopier{dst: b, src: a}.run() }()
	go func() { errc <- halfCopier{dst: a, src: b}.run() }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			a.Close()
			b.Close()
		}
	}
	return first
}

// refusal returns the MASQUE proxy's refusal in err, if it is one, and the
// error type of its Proxy-Status (RFC 9209), if any.
func refusal(err error) (pe *proxyconn.ProxyError, kind string) {
	if !errors.As(err, &pe) {
		return nil, ""
	}
	for param := range strings.SplitSeq(pe.ProxyStatus, ";") {
		if v, found := strings.CutPrefix(strings.TrimSpace(param), "error="); found {
			return pe, strings.TrimSpace(strings.SplitN(v, ",", 2)[0])
		}
	}
	return pe, ""
}

// socksReply maps a failure to open a tunnel to a SOCKS5 reply code.
func socksReply(err error) byte {
	pe, kind := refusal(err)
	if pe == nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return replyTTLExpired
		}
		return replyGeneralFailure
	}
	switch kind {
	case masque.StatusIPProhibited, masque.StatusHTTPRequestDenied:
		return replyNotAllowed
	case masque.StatusDNSError, masque.StatusDNSTimeout, masque.StatusDestinationNotFound, masque.StatusDestinationUnavailable:
		return replyHostUnreachable
	case masque.StatusIPUnroutable:
		return replyNetworkUnreachable
	case masque.StatusConnectionRefused:
		return replyConnectionRefused
	case masque.StatusConnectionTimeout:
		return replyTTLExpired
	}
	switch pe.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusProxyAuthRequired:
		return replyNotAllowed
	case http.StatusGatewayTimeout:
		return replyTTLExpired
	}
	return replyGeneralFailure
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
