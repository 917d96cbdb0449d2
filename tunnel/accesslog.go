package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/masqued/masqued/masque"
)

// AccessLog says what the access log records: one line per tunnel, written
// when it closes, with its kind, front, duration and bytes each way. It can
// add the client's address or the target, never both: one value chooses at
// most one of them, so no configuration can put a user next to where they
// went in one line.
type AccessLog uint8

const (
	AccessLogPlain  AccessLog = iota // the zero value: no address at all
	AccessLogNone                    // no access log
	AccessLogClient                  // the client's address, not the target
	AccessLogTarget                  // the target, not the client's address
)

var accessLogNames = [...]string{"plain", "none", "client", "target"}

func (a AccessLog) String() string {
	if int(a) < len(accessLogNames) {
		return accessLogNames[a]
	}
	return "unknown"
}

// ParseAccessLog parses plain, none, client or target.
func ParseAccessLog(s string) (AccessLog, error) {
	for i, n := range accessLogNames {
		if s == n {
			return AccessLog(i), nil
		}
	}
	return 0, fmt.Errorf("access log %q: want plain, none, client or target", s)
}

// accessEntry is one access log line.
type accessEntry struct {
	front       string
	kind        Kind
	status      int
	proxyStatus string // the RFC 9209 error of a refusal, or of a tunnel that failed after its 2xx
	start       time.Time
	up, down    int64
	peer        string        // "" unless AccessLogClient
	dest        masque.Target // zero unless AccessLogTarget
}

// logAccess writes e's line, with the one address the configuration
// allows, if any.
func (p *Proxy) logAccess(e accessEntry) {
	if p.cfg.AccessLog == AccessLogNone {
		return
	}
	attrs := []slog.Attr{
		slog.String("front", e.front),
		slog.String("kind", e.kind.String()),
		slog.Int("status", e.status),
		slog.Duration("duration", time.Since(e.start)),
	}
	msg := "tunnel"
	if e.status >= 400 { // a refusal: no tunnel, no bytes
		msg = "tunnel refused"
	} else {
		attrs = append(attrs, slog.Int64("bytes_up", e.up), slog.Int64("bytes_down", e.down))
	}
	if e.proxyStatus != "" {
		attrs = append(attrs, slog.String("proxy_status", e.proxyStatus))
	}
	switch p.cfg.AccessLog {
	case AccessLogClient:
		attrs = append(attrs, slog.String("client", e.peer))
	case AccessLogTarget:
		attrs = append(attrs, slog.String("target", e.dest.String()))
	}
	p.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// addresses returns what of r's client and target the access log may hold.
func (p *Proxy) addresses(r *http.Request, target masque.Target) (peer string, dest masque.Target) {
	switch p.cfg.AccessLog {
	case AccessLogClient:
		return r.RemoteAddr, masque.Target{}
	case AccessLogTarget:
		return "", target
	}
	return "", masque.Target{}
}
