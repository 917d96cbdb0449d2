// Package iptunnel is masqued's CONNECT-IP (RFC 9484): full-device tunnels.
// A Server owns a TUN device whose addresses are the first of each address
// pool; every tunnel gets an address of each pool, routes to what its
// request's scope allows, and its packets go through the TUN device into
// the kernel, which routes them and rewrites their source to the tunnel's
// egress address (source NAT in nftables, see nat). The tunnel core admits
// each tunnel (auth, limits, counters, access log; tunnel.Front.OpenIP) and
// its Policy is checked on every packet's destination.
//
// Like the tunnel core, the Server does not listen: a front (h3proxy)
// matches a request, calls Open and, after its 2xx, Session.Relay with the
// request stream and, over HTTP/3, its datagrams.
//
// The data path allocates nothing per packet: buffers are pooled, a single
// goroutine reads the TUN device and hands each packet to its tunnel's
// bounded queue (dropped and counted when full), and one writer per tunnel
// sends them, so that a slow client holds up only its own packets.
package iptunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/internal/tun"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/connectip"
	"github.com/masqued/masqued/tunnel"
)

// Protocol is the extended-CONNECT :protocol of CONNECT-IP.
const Protocol = connectip.Protocol

// EgressSelector picks a tunnel's egress addresses (one per family; the
// zero Addr: the outgoing interface's). geoegress.Dialer is one.
type EgressSelector interface {
	SourceFor(r *http.Request) tunnel.Source
}

// Config configures a Server. Pools is required.
type Config struct {
	// Template is the CONNECT-IP URI template; nil = DefaultTemplate.
	Template *Template
	// Pools holds at most one IPv4 and one IPv6 prefix. The first address
	// of each is the TUN device's; tunnels get the others, one of each.
	Pools []netip.Prefix
	// Device names the TUN device; "" = "masqued-ip".
	Device string
	// MTU is the TUN device's and so the tunnels' link MTU; 0 = 1280, the
	// least RFC 9484 §10.1 allows, which fits QUIC datagrams on common
	// paths.
	MTU int
	// Egress chooses tunnels' egress addresses; nil: the outgoing
	// interface's address (masquerade).
	Egress EgressSelector
	// Resolver resolves scoped requests' target names; nil =
	// net.DefaultResolver.
	Resolver Resolver
	// Registerer takes the Server's metrics; nil = not registered.
	Registerer prometheus.Registerer
	// Logger logs set-up and failures, never a client with a target; nil
	// is silent.
	Logger *slog.Logger
	// QueueLen bounds each tunnel's queue of packets to send; 0 = 256.
	QueueLen int
}

// device is the TUN device as the relay uses it; tests fake it.
type device interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

// headroom is the space before a packet in a buffer, for the Context ID and
// the capsule or quarter-stream-ID framing written in place.
const headroom = capsule.MaxHeaderLen + 1

// Server relays CONNECT-IP tunnels through a TUN device. Create it with New
// in the network namespace it is to serve; Close removes the device and the
// NAT rules.
type Server struct {
	cfg     Config
	dev     device
	nat     *nat // nil in tests without a kernel
	name    string
	pools   [2]*pool // IPv4, IPv6; nil if not configured
	metrics *metrics
	bufs    sync.Pool // *[]byte of headroom+MTU

	mu       sync.RWMutex
	sessions map[netip.Addr]*Session // by assigned address
	closed   bool

	readerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// New opens the TUN device, gives it the pools' first addresses, installs
// the source NAT and starts reading. It needs CAP_NET_ADMIN (errors wrap
// tun.ErrNoCapability without it) and IP forwarding on for the pools'
// families (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding).
func New(c Config) (*Server, error) {
	s, gws, err := configure(c)
	if err != nil {
		return nil, err
	}
	for _, p := range s.cfg.Pools {
		if err := checkForwarding(p.Addr().Is4()); err != nil {
			return nil, err
		}
	}
	dev, err := tun.Open(s.cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("iptunnel: %w", err)
	}
	if err := dev.Up(s.cfg.MTU, gws...); err != nil {
		dev.Close()
		return nil, fmt.Errorf("iptunnel: %w", err)
	}
	if s.nat, err = newNAT(dev.Name(), s.cfg.Pools); err != nil {
		dev.Close()
		return nil, fmt.Errorf("iptunnel: %w", err)
	}
	s.dev, s.name = dev, dev.Name()
	go s.readTUN()
	s.cfg.Logger.Info("connect-ip: serving", "device", s.name, "pools", fmt.Sprint(s.cfg.Pools), "mtu", s.cfg.MTU)
	return s, nil
}

// configure builds a Server for c without its device: defaults, pools,
// metrics, buffers. It returns the device's addresses.
func configure(c Config) (_ *Server, gws []netip.Prefix, err error) {
	if c.Template == nil {
		if c.Template, err = ParseTemplate(DefaultTemplate); err != nil {
			return nil, nil, err
		}
	}
	if c.Device == "" {
		c.Device = "masqued-ip"
	}
	if c.MTU == 0 {
		c.MTU = 1280
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return nil, nil, fmt.Errorf("iptunnel: MTU %d: RFC 9484 §10.1 needs at least 1280", c.MTU)
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.QueueLen == 0 {
		c.QueueLen = 256
	}
	s := &Server{cfg: c, sessions: make(map[netip.Addr]*Session), readerDone: make(chan struct{})}
	for _, p := range c.Pools {
		i := 0
		if p.Addr().Is6() {
			i = 1
		}
		if s.pools[i] != nil {
			return nil, nil, fmt.Errorf("iptunnel: more than one pool of a family (%s)", p)
		}
		if maxBits := p.Addr().BitLen(); p.Bits() > maxBits-2 {
			return nil, nil, fmt.Errorf("iptunnel: pool %s is too small", p)
		}
		s.pools[i] = newPool(p)
		gws = append(gws, netip.PrefixFrom(s.pools[i].gateway, p.Bits()))
	}
	if len(gws) == 0 {
		return nil, nil, errors.New("iptunnel: no address pool")
	}
	if s.metrics, err = newMetrics(c.Registerer); err != nil {
		return nil, nil, err
	}
	s.bufs.New = func() any {
		b := make([]byte, headroom+c.MTU)
		return &b
	}
	return s, gws, nil
}

// checkForwarding fails unless the kernel forwards the family's packets.
func checkForwarding(v4 bool) error {
	path, key := "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"
	if !v4 {
		path, key = "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("iptunnel: reading %s: %w", key, err)
	}
	if len(b) == 0 || b[0] != '1' {
		return fmt.Errorf("iptunnel: IP forwarding is off: CONNECT-IP needs sysctl %s=1", key)
	}
	return nil
}

// Template is the CONNECT-IP URI template served.
func (s *Server) Template() *Template { return s.cfg.Template }

// Gateways returns the TUN device's addresses, the proxy's own (for
// tunnel.Policy.Self); none for a nil Server.
func (s *Server) Gateways() []netip.Addr {
	if s == nil {
		return nil
	}
	var out []netip.Addr
	for _, p := range s.pools {
		if p != nil {
			out = append(out, p.gateway)
		}
	}
	return out
}

// Close ends every tunnel, stops reading the device, and removes it and the
// NAT rules. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		sessions := make([]*Session, 0, len(s.sessions))
		for _, se := range s.sessions {
			sessions = append(sessions, se)
		}
		s.mu.Unlock()
		for _, se := range sessions {
			se.cancel()
		}
		err := s.dev.Close()
		<-s.readerDone
		if s.nat != nil {
			err = errors.Join(err, s.nat.close())
		}
		s.closeErr = err
	})
	return s.closeErr
}

// readTUN reads packets from the device and queues each for the tunnel its
// destination belongs to. It is the only reader; Close ends it.
func (s *Server) readTUN() {
	defer close(s.readerDone)
	for {
		bp := s.bufs.Get().(*[]byte)
		b := *bp
		n, err := s.dev.Read(b[headroom:])
		if err != nil {
			s.bufs.Put(bp)
			if !errors.Is(err, os.ErrClosed) {
				s.cfg.Logger.Error("connect-ip: reading the TUN device", "error", err)
			}
			return
		}
		h, ok := parseHeader(b[headroom : headroom+n])
		if !ok {
			s.metrics.drop(dropMalformed)
			s.bufs.Put(bp)
			continue
		}
		s.mu.RLock()
		se := s.sessions[h.dst]
		s.mu.RUnlock()
		if se == nil {
			s.metrics.drop(dropNoTunnel)
			s.bufs.Put(bp)
			continue
		}
		se.enqueue(bp, n)
	}
}

// Open admits a CONNECT-IP request r (the tunnel core's auth and limits,
// through front), matches its scope, and assigns it addresses. On success
// the front answers 2xx and calls Relay; on failure it answers
// front.WriteError(err). conn is the client connection's state.
func (s *Server) Open(ctx context.Context, front *tunnel.Front, r *http.Request, conn *tunnel.ConnState) (*Session, error) {
	vars := s.cfg.Template.vars(r.URL.RequestURI())
	if vars == nil {
		return nil, masque.BadRequest("request path does not match the CONNECT-IP template", nil)
	}
	target := "*"
	if v := vars.Get("target"); v.Valid() {
		target = v.String()
	}
	se := &Session{s: s, down: make(chan packet, s.cfg.QueueLen), ctrl: make(chan []byte, 16)}
	se.ctx, se.cancel = context.WithCancel(context.Background())
	t, err := front.OpenIP(r, target, conn, releaser{se})
	if err != nil {
		se.cancel()
		return nil, err
	}
	se.t = t
	if se.scope, err = s.cfg.Template.match(ctx, r.URL.RequestURI(), s.cfg.Resolver); err != nil {
		se.t.Close()
		return nil, err
	}
	var src tunnel.Source
	if s.cfg.Egress != nil {
		src = s.cfg.Egress.SourceFor(r)
	}
	for i, p := range s.pools {
		if p == nil {
			continue
		}
		a, ok := p.get()
		if !ok {
			se.t.Close()
			return nil, &masque.Error{HTTPStatus: http.StatusServiceUnavailable, Kind: masque.StatusConnectionLimit,
				Details: "the address pool is exhausted"}
		}
		se.addrs[i] = a
		if egress := src.ForFamily(a); egress.IsValid() {
			if err := s.nat.set(a, egress); err != nil {
				s.cfg.Logger.Error("connect-ip: egress address not set", "error", err)
				se.t.Close()
				return nil, &masque.Error{HTTPStatus: http.StatusInternalServerError, Kind: masque.StatusInternalError}
			}
			se.natted[i] = true
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		se.t.Close()
		return nil, &masque.Error{HTTPStatus: http.StatusServiceUnavailable, Kind: masque.StatusInternalError, Details: "shutting down"}
	}
	for _, a := range se.addrs {
		if a.IsValid() {
			s.sessions[a] = se
		}
	}
	s.mu.Unlock()
	return se, nil
}
