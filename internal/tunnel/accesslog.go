package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"time"
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

// logAccess writes t's access log line.
func (t *Tunnel) logAccess() {
	p := t.f.p
	if p.cfg.AccessLog == AccessLogNone {
		return
	}
	attrs := []slog.Attr{
		slog.String("front", t.f.name),
		slog.String("kind", t.kind.String()),
		slog.Int("status", t.status),
		slog.Duration("duration", time.Since(t.start)),
		slog.Int64("bytes_up", t.up.Load()),
		slog.Int64("bytes_down", t.down.Load()),
	}
	switch p.cfg.AccessLog {
	case AccessLogClient:
		attrs = append(attrs, slog.String("client", t.peer))
	case AccessLogTarget:
		attrs = append(attrs, slog.String("target", t.dest.String()))
	}
	p.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "tunnel", attrs...)
}
