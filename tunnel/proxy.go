// Package tunnel is masqued's tunnel core: everything a proxy front needs
// between "a request arrived" and "bytes flow", independent of the HTTP
// version that carried the request.
//
// A front (HTTP/3 in h3proxy, HTTP/2 and HTTP/1.1 in h2proxy) turns a request
// into a call to Front.Open, answers with the status Open's error maps to (see
// WriteError), and hands the established stream, plus a DatagramConn where the
// transport has one, to Tunnel.Relay. The core
// matches requests against the URI template (targets, templates and
// Proxy-Status errors are package masque's, which clients share),
// authenticates, enforces limits and the SSRF policy, resolves and dials,
// and relays, counting every drop. It never listens on its own and does not
// import any front.
//
// The package is public so that a server can be built outside this module,
// with a front of its own or with h3proxy and h2proxy. What is stable is
// what that takes: Config, New and Proxy's methods; the Front API a front is
// built on (Proxy.Front, Front's methods, ConnState, Tunnel, Stream,
// DatagramConn); the seams Config names (Policy, Resolver, Dialer,
// Authenticator); and the names and labels of the metrics NewMetrics
// registers, which dashboards and alerts depend on. Anything else may change
// before v1.0.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqued/masqued/masque"
)

// Kind is the kind of a tunnel.
type Kind uint8

const (
	KindTCP Kind = iota + 1 // CONNECT (RFC 9110 §9.3.6)
	KindUDP                 // CONNECT-UDP (RFC 9298)
)

func (k Kind) String() string {
	switch k {
	case KindTCP:
		return "tcp"
	case KindUDP:
		return "udp"
	case KindIP:
		return "ip"
	}
	return "unknown"
}

// Limits bound what clients can make the proxy hold. Zero fields take the
// defaults documented on each.
type Limits struct {
	MaxTunnels        int           // open tunnels in total; 0 = unlimited
	MaxTunnelsPerConn int           // open tunnels per client connection; 0 = 10000
	IdleTimeout       time.Duration // tunnel without traffic either way; 0 = 5 minutes
	DialTimeout       time.Duration // resolve and connect to a target; 0 = 10 seconds
	MaxUDPPayload     int           // largest UDP payload relayed; 0 = 16384, at most masque.MaxUDPPayload
}

func (l Limits) withDefaults() Limits {
	if l.MaxTunnelsPerConn == 0 {
		l.MaxTunnelsPerConn = 10000
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 5 * time.Minute
	}
	if l.DialTimeout == 0 {
		l.DialTimeout = 10 * time.Second
	}
	if l.MaxUDPPayload == 0 {
		l.MaxUDPPayload = 16384
	}
	l.MaxUDPPayload = min(l.MaxUDPPayload, masque.MaxUDPPayload)
	return l
}

// Config configures a Proxy. The zero Config is a safe proxy with the default
// UDP template, the system resolver, no authentication and default limits.
type Config struct {
	Identity string           // proxy name in Proxy-Status, a Structured Field token; "" = "masqued"
	Template *masque.Template // CONNECT-UDP template; nil = masque.DefaultUDPTemplate
	Policy   Policy           // which targets may be reached
	Resolver Resolver         // nil = net.DefaultResolver
	Dialer   Dialer           // nil = &NetDialer{}
	Auth     Authenticator    // nil = admit every request
	Limits   Limits
	Metrics  *Metrics     // nil = not counted
	Logger   *slog.Logger // nil = silent
	// AccessLog chooses what the per-tunnel log line at level info holds;
	// the zero value holds no address.
	AccessLog AccessLog

	// AuthPerConn makes Auth admit connections rather than tunnels: once one
	// request of a client connection passes Auth, the connection's further
	// tunnel requests are not asked again. False: every tunnel request is
	// authenticated (with Privacy Pass, one token per tunnel).
	AuthPerConn bool

	// IgnoreDatagramCapsules makes the proxy read and discard the DATAGRAM
	// capsules clients send, as a proxy without capsule support would: UDP
	// tunnels then work only over QUIC datagrams. It exists for the interop
	// runner's test of itself (masqued -interop-break capsules); never set it
	// otherwise.
	IgnoreDatagramCapsules bool
}

// Proxy is the tunnel core. It is safe for concurrent use.
type Proxy struct {
	cfg    Config
	limits Limits
	open   atomic.Int64 // tunnels open across all fronts
	dgBufs sync.Pool    // *[]byte of datagramBufLen(limits.MaxUDPPayload)
}

// New returns a Proxy for c.
func New(c Config) (*Proxy, error) {
	if c.Identity == "" {
		c.Identity = "masqued"
	}
	if !masque.ValidIdentity(c.Identity) {
		return nil, fmt.Errorf("tunnel: identity %q is not a Structured Field token (RFC 8941 §3.3.4), as the first member of Proxy-Status must be", c.Identity)
	}
	if c.Template == nil {
		t, err := masque.ParseTemplate(masque.DefaultUDPTemplate)
		if err != nil {
			return nil, err
		}
		c.Template = t
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Dialer == nil {
		c.Dialer = &NetDialer{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: c, limits: c.Limits.withDefaults()}
	p.dgBufs.New = func() any {
		b := make([]byte, datagramBufLen(p.limits.MaxUDPPayload))
		return &b
	}
	return p, nil
}

// Identity is the name the proxy uses in Proxy-Status.
func (p *Proxy) Identity() string { return p.cfg.Identity }

// Template is the CONNECT-UDP URI template.
func (p *Proxy) Template() *masque.Template { return p.cfg.Template }

// Limits returns the limits in force, defaults applied.
func (p *Proxy) Limits() Limits { return p.limits }

// Front returns the handle a front named name ("h3", "h2", "h1") uses.
func (p *Proxy) Front(name string) *Front {
	return &Front{
		p:    p,
		name: name,
		tcp:  p.cfg.Metrics.forKind(name, KindTCP),
		udp:  p.cfg.Metrics.forKind(name, KindUDP),
	}
}

// Front is one front's view of the core, with its metrics resolved.
type Front struct {
	p        *Proxy
	name     string
	tcp, udp *kindCounters
}

// ConnOpened counts a client connection of this front as open; call the
// returned function once when it closes.
func (f *Front) ConnOpened() (closed func()) {
	m := f.p.cfg.Metrics
	if m == nil {
		return func() {}
	}
	active := m.conns.WithLabelValues(f.name)
	m.connTotal.WithLabelValues(f.name).Inc()
	active.Inc()
	var once sync.Once
	return func() { once.Do(active.Dec) }
}

// ConnState tracks the tunnels of one client connection, for the
// per-connection limit. The zero ConnState is ready to use.
type ConnState struct {
	open   atomic.Int64
	authed atomic.Bool // a request passed Auth (see Config.AuthPerConn)
}

// WriteError answers a failed tunnel request (see masque.WriteError) and
// counts it.
func (f *Front) WriteError(w http.ResponseWriter, err error) {
	// Counted before it is written: a front may send the response at once
	// (h3proxy's refusals do), and a client that reads it and then scrapes
	// /metrics must find it counted.
	_, e := masque.StatusOf(err)
	f.p.cfg.Metrics.countError(f.name, e.Kind)
	f.p.cfg.Logger.Debug("tunnel refused", "front", f.name, "status", e.Kind, "details", e.Details)
	masque.WriteError(w, f.p.cfg.Identity, err)
}

// ParseRequest classifies r and extracts its target. protocol is the
// extended-CONNECT :protocol, or the Upgrade token of an HTTP/1.1 request,
// and "" for neither.
func (f *Front) ParseRequest(r *http.Request, protocol string) (Kind, masque.Target, error) {
	switch {
	case protocol == masque.ProtocolConnectUDP:
		if r.Method != http.MethodConnect && !(r.Method == http.MethodGet && r.ProtoMajor == 1) {
			return 0, masque.Target{}, masque.BadRequest("connect-udp needs extended CONNECT, or GET with Upgrade on HTTP/1.1", nil)
		}
		if r.URL.Scheme != "" && r.URL.Scheme != "https" {
			return 0, masque.Target{}, masque.BadRequest("connect-udp needs the https scheme", nil)
		}
		t, err := f.p.cfg.Template.Match(r.URL.RequestURI())
		return KindUDP, t, err
	case protocol != "":
		return 0, masque.Target{}, masque.BadRequest("unsupported protocol "+protocolName(protocol), nil)
	case r.Method == http.MethodConnect:
		t, err := masque.ParseAuthority(r.Host)
		return KindTCP, t, err
	}
	if _, err := f.p.cfg.Template.Match(r.URL.RequestURI()); err == nil {
		return 0, masque.Target{}, masque.BadRequest("connect-udp needs extended CONNECT with :protocol connect-udp", nil)
	}
	return 0, masque.Target{}, &masque.Error{HTTPStatus: http.StatusMethodNotAllowed, Kind: masque.StatusHTTPRequestError,
		Details: "this proxy serves CONNECT and CONNECT-UDP only"}
}

// protocolName keeps a client-chosen token printable and short for details.
func protocolName(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// Open authenticates r, enforces limits, resolves the target, applies the
// policy and dials. On success the caller answers 2xx (101 on HTTP/1.1),
// relays with the returned Tunnel and closes it. On failure it answers
// WriteError(err). conn is the client connection's state.
func (f *Front) Open(ctx context.Context, r *http.Request, kind Kind, target masque.Target, conn *ConnState) (_ *Tunnel, err error) {
	start := time.Now()
	defer func() { f.logRefused(r, kind, target, start, err) }()
	if err := f.authenticate(r, conn); err != nil {
		return nil, err
	}
	t := &Tunnel{f: f, conn: conn, counters: f.tcp, kind: kind, start: start, status: http.StatusOK}
	t.peer, t.dest = f.p.addresses(r, target)
	if r.ProtoMajor == 1 && kind == KindUDP {
		t.status = http.StatusSwitchingProtocols
	}
	if kind == KindUDP {
		t.counters = f.udp
	}
	if err := t.acquire(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.p.limits.DialTimeout)
	defer cancel()
	addrs, err := f.p.resolve(ctx, target)
	if err == nil {
		network := "tcp"
		if kind == KindUDP {
			network = "udp"
		}
		var detail string
		if dd, ok := f.p.cfg.Dialer.(DetailDialer); ok {
			t.target, detail, err = dd.DialDetail(ctx, network, addrs, r)
		} else {
			t.target, err = f.p.cfg.Dialer.Dial(ctx, network, addrs, r)
		}
		if detail != "" {
			t.header = http.Header{"Proxy-Status": {masque.ProxyStatus(f.p.cfg.Identity, &masque.Error{Details: detail})}}
		}
	}
	if err != nil {
		t.release()
		return nil, err
	}
	if c := t.counters; c != nil {
		c.setup.Observe(time.Since(start).Seconds())
		c.total.Inc()
		c.active.Inc()
	}
	return t, nil
}

// logRefused writes the access-log line of a tunnel request that failed
// with err; nothing if err is nil.
func (f *Front) logRefused(r *http.Request, kind Kind, target masque.Target, start time.Time, err error) {
	if err != nil {
		status, e := masque.StatusOf(err)
		peer, dest := f.p.addresses(r, target)
		f.p.logAccess(accessEntry{front: f.name, kind: kind, status: status, proxyStatus: e.Kind, start: start, peer: peer, dest: dest})
	}
}

// authenticate puts r to the Authenticator, unless its connection is
// already admitted (Config.AuthPerConn).
func (f *Front) authenticate(r *http.Request, conn *ConnState) error {
	if f.p.cfg.Auth == nil || (f.p.cfg.AuthPerConn && conn != nil && conn.authed.Load()) {
		return nil
	}
	err := f.p.cfg.Auth.Authenticate(r)
	f.p.cfg.Metrics.countAuth(err)
	if err == nil && conn != nil {
		conn.authed.Store(true)
	}
	return err
}

// resolve returns target's addresses that the policy allows.
func (p *Proxy) resolve(ctx context.Context, target masque.Target) ([]netip.AddrPort, error) {
	relayed, err := p.cfg.Policy.CheckTarget(target)
	if err != nil {
		return nil, err
	}
	check := p.cfg.Policy.Check
	if relayed {
		check = p.cfg.Policy.CheckRelayed
	}
	var ips []netip.Addr
	if a, ok := target.Addr(); ok {
		ips = []netip.Addr{a}
	} else {
		var err error
		start := time.Now()
		ips, err = p.cfg.Resolver.LookupNetIP(ctx, "ip", target.Host)
		p.cfg.Metrics.observeDNS(time.Since(start), err)
		if err != nil {
			return nil, err
		}
	}
	var allowed []netip.AddrPort
	var refusal error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), target.Port)
		if err := check(netip.AddrPortFrom(ip, target.Port)); err != nil {
			refusal = err
			continue
		}
		allowed = append(allowed, ap)
	}
	if len(allowed) == 0 {
		if refusal == nil {
			refusal = &masque.Error{HTTPStatus: http.StatusBadGateway, Kind: masque.StatusDestinationNotFound, Details: "name has no addresses"}
		}
		return nil, refusal
	}
	return allowed, nil
}

// Tunnel is an established tunnel: an admitted request and its connected
// target socket. Relay owns it until it returns and closes it; a front that
// cannot relay (its stream failed before the first byte) calls Close instead.
type Tunnel struct {
	f        *Front
	conn     *ConnState
	counters *kindCounters
	target   net.Conn
	header   http.Header // for the success response; see Header
	closed   atomic.Bool

	// For the access log: dest and peer only as Config.AccessLog allows.
	kind     Kind
	start    time.Time
	status   int
	dest     masque.Target
	peer     string
	up, down atomic.Int64 // payload bytes
	failure  string       // RFC 9209 error the tunnel ended with after its 2xx; set before Close

	fw *Forwarding // forwarded mode, if negotiated (UseForwarding)
}

// UseForwarding makes a UDP tunnel relay in forwarded mode as well as in
// HTTP Datagrams, with fw from ForwardSocket.Negotiate. Call it before
// Relay, and only for a tunnel whose payloads travel in QUIC DATAGRAM
// frames: the capsule loop then writes the stream's connection ID capsules.
func (t *Tunnel) UseForwarding(fw *Forwarding) { t.fw = fw }

// Relay relays the tunnel between client, the front's stream after its 2xx
// (101 on HTTP/1.1), and the target until the tunnel ends, then closes it.
// A TCP tunnel relays bytes, passing each side's FIN on as a half-close. A UDP
// tunnel relays HTTP Datagrams: on datagrams where the client's transport has
// a datagram channel (QUIC DATAGRAM frames), and as DATAGRAM capsules on
// client, which is all there is when datagrams is nil; a bad or oversized
// datagram is dropped and counted, never the tunnel's end. Either ends when
// the client ends its stream, a side fails, or the tunnel is idle for
// Limits.IdleTimeout; on failure client is aborted (with RefusedEnder's
// EndRefused for masque.ErrTargetRefused), so that nothing stays blocked. Relay is
// the one place that logs why a tunnel ended (at debug level; the access log
// line is Close's). It returns the error that ended the tunnel, nil for a
// clean end.
func (t *Tunnel) Relay(client Stream, datagrams DatagramConn) error {
	defer t.Close()
	var err error
	if t.kind == KindTCP {
		err = t.relayStream(client)
	} else {
		err = t.relayDatagrams(client, datagrams)
	}
	if err != nil {
		t.f.p.cfg.Logger.Debug("tunnel ended", "front", t.f.name, "kind", t.kind.String(), "error", err)
	}
	return err
}

// failed records that the established tunnel ended with the RFC 9209 error
// kind, for the access log and masqued_tunnel_errors_total at Close.
func (t *Tunnel) failed(kind string) { t.failure = kind }

func (t *Tunnel) countUp(n int) {
	t.up.Add(int64(n))
	t.counters.up(n)
}

func (t *Tunnel) countDown(n int) {
	t.down.Add(int64(n))
	t.counters.down(n)
}

func (t *Tunnel) datagramUp(n int) {
	t.up.Add(int64(n))
	t.counters.datagramUp(n)
}

func (t *Tunnel) datagramDown(n int) {
	t.down.Add(int64(n))
	t.counters.datagramDown(n)
}

// Header returns header fields the front adds to its success response, such
// as a Proxy-Status with details from the Dialer (DetailDialer); nil if none.
// The caller must not modify it.
func (t *Tunnel) Header() http.Header { return t.header }

var errTooManyTunnels = errors.New("tunnel limit reached")

func (t *Tunnel) acquire() error {
	p := t.f.p
	if n := p.open.Add(1); p.limits.MaxTunnels > 0 && n > int64(p.limits.MaxTunnels) {
		p.open.Add(-1)
		p.cfg.Metrics.CountLimit(LimitTunnels)
		return &masque.Error{HTTPStatus: http.StatusServiceUnavailable, Kind: masque.StatusConnectionLimit,
			Details: "the proxy's tunnel limit is reached", Err: errTooManyTunnels}
	}
	if t.conn != nil {
		if n := t.conn.open.Add(1); n > int64(p.limits.MaxTunnelsPerConn) {
			t.conn.open.Add(-1)
			p.open.Add(-1)
			p.cfg.Metrics.CountLimit(LimitTunnelsPerConn)
			return &masque.Error{HTTPStatus: http.StatusTooManyRequests, Kind: masque.StatusConnectionLimit,
				Details: "too many tunnels on this connection", Err: errTooManyTunnels}
		}
	}
	return nil
}

func (t *Tunnel) release() {
	t.f.p.open.Add(-1)
	if t.conn != nil {
		t.conn.open.Add(-1)
	}
}

// Close closes the target socket and releases the tunnel's limit slots. It is
// safe to call more than once.
func (t *Tunnel) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	t.release()
	if c := t.counters; c != nil {
		c.active.Dec()
	}
	if t.failure != "" {
		t.f.p.cfg.Metrics.countError(t.f.name, t.failure)
	}
	t.f.p.logAccess(accessEntry{front: t.f.name, kind: t.kind, status: t.status, proxyStatus: t.failure, start: t.start,
		up: t.up.Load(), down: t.down.Load(), peer: t.peer, dest: t.dest})
	return t.target.Close()
}

// Conn returns the connection to the target for a front that speaks to the
// target itself instead of relaying a client stream, as plain-HTTP
// forwarding does. Bytes through it count as the tunnel's. Close the Tunnel,
// not the Conn.
func (t *Tunnel) Conn() net.Conn { return &countingConn{Conn: t.target, t: t} }

// countingConn counts a forwarding front's bytes: writes go up to the
// target, reads come down from it.
type countingConn struct {
	net.Conn
	t *Tunnel
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.countDown(n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.t.countUp(n)
	return n, err
}
