package tunnel

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/masqued/masqued/masque"
)

// KindIP is a CONNECT-IP tunnel (RFC 9484). The core admits it (auth,
// limits, counters, access log) and checks each packet's destination against
// the Policy; package iptunnel relays its packets.
const KindIP Kind = KindUDP + 1

// IPTunnel is an admitted CONNECT-IP tunnel as the core sees it: limit slots
// held, counters resolved, an access-log line written at Close. It is safe
// for concurrent use.
type IPTunnel struct {
	t *Tunnel
}

// OpenIP authenticates a CONNECT-IP request and takes its limit slots. scope
// is the request's target variable ("*", an address or a prefix), logged as
// its target only as Config.AccessLog allows. Closing the IPTunnel closes
// session, the relay the caller runs; call Close once the relay ends. conn
// is the client connection's state.
func (f *Front) OpenIP(r *http.Request, scope string, conn *ConnState, session io.Closer) (_ *IPTunnel, err error) {
	start := time.Now()
	dest := masque.Target{Host: scope}
	defer func() { f.logRefused(r, KindIP, dest, start, err) }()
	if err := f.authenticate(r, conn); err != nil {
		return nil, err
	}
	t := &Tunnel{f: f, conn: conn, counters: f.p.cfg.Metrics.forKind(f.name, KindIP), kind: KindIP, start: start,
		status: http.StatusOK, target: sessionConn{session}}
	t.peer, t.dest = f.p.addresses(r, dest)
	if err := t.acquire(); err != nil {
		return nil, err
	}
	if c := t.counters; c != nil {
		c.setup.Observe(time.Since(start).Seconds())
		c.total.Inc()
		c.active.Inc()
	}
	return &IPTunnel{t: t}, nil
}

// sessionConn lets a Tunnel close an IP relay as it closes a target socket;
// Close is the only method a KindIP Tunnel calls.
type sessionConn struct {
	io.Closer
}

func (sessionConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (sessionConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (sessionConn) LocalAddr() net.Addr              { return nil }
func (sessionConn) RemoteAddr() net.Addr             { return nil }
func (sessionConn) SetDeadline(time.Time) error      { return nil }
func (sessionConn) SetReadDeadline(time.Time) error  { return nil }
func (sessionConn) SetWriteDeadline(time.Time) error { return nil }

// Allowed reports whether the Policy lets a packet reach dst (its port is
// that of TCP, UDP and the like, else 0). It does not allocate for an
// allowed destination.
func (t *IPTunnel) Allowed(dst netip.AddrPort) bool {
	return t.t.f.p.cfg.Policy.Check(dst) == nil
}

// IdleTimeout is Limits.IdleTimeout.
func (t *IPTunnel) IdleTimeout() time.Duration { return t.t.f.p.limits.IdleTimeout }

// Up counts a packet of n bytes from the client; Down one to it.
func (t *IPTunnel) Up(n int)   { t.t.datagramUp(n) }
func (t *IPTunnel) Down(n int) { t.t.datagramDown(n) }

// Idle records that the tunnel ended for the idle timeout.
func (t *IPTunnel) Idle() { t.t.f.p.cfg.Metrics.CountLimit(LimitIdle) }

// Failed records that the tunnel ended with the RFC 9209 error kind, for the
// access log and masqued_tunnel_errors_total at Close.
func (t *IPTunnel) Failed(kind string) { t.t.failed(kind) }

// Close releases the tunnel's slots, writes its access-log line and closes
// the session given to OpenIP. It is safe to call more than once.
func (t *IPTunnel) Close() error { return t.t.Close() }
