// Package client opens tunnels through a MASQUE proxy the way a browser
// reaches a proxy on a hostile network: HTTP/3 first, and HTTP/2 over TLS+TCP
// when QUIC does not answer within a short delay (a race in the manner of
// Happy Eyeballs, RFC 8305), remembering per proxy for a while that UDP was
// blocked so that the next connection does not wait again. client/h3 and
// client/h2 hold the two transports; this package only chooses between them.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/masque"
)

// Transport names a way to reach the proxy.
type Transport string

const (
	Auto  Transport = ""         // HTTP/3, falling back to HTTP/2 (or HTTP/1.1)
	HTTP3 Transport = "h3"       // QUIC only
	HTTP2 Transport = "h2"       // TLS+TCP, HTTP/2 if the proxy offers it
	HTTP1 Transport = "http/1.1" // TLS+TCP, a connection per tunnel
)

// ParseTransport parses "auto", "h3", "h2" or "h1"/"http/1.1".
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "auto", "":
		return Auto, nil
	case "h3":
		return HTTP3, nil
	case "h2":
		return HTTP2, nil
	case "h1", "http/1.1":
		return HTTP1, nil
	}
	return "", fmt.Errorf("unknown transport %q: want auto, h3, h2 or h1", s)
}

// Defaults for Dialer's zero fields.
const (
	DefaultFallbackDelay = 300 * time.Millisecond
	DefaultRemember      = 5 * time.Minute
	// DefaultRefusedGrace is a second: a QUIC handshake takes one round
	// trip, and a proxy that refuses TCP but serves HTTP/3 (masqued
	// -no-tcp) answers well within it on any but the slowest paths, while a
	// user waiting for "nothing listening" should not wait for QUIC's own
	// handshake timeout (5 s and more).
	DefaultRefusedGrace = time.Second
)

// Dialer connects to proxies. Set its fields before the first Dial. The zero
// Dialer races HTTP/3 against HTTP/2 with the system roots. It is safe for
// concurrent use.
type Dialer struct {
	// TLSConfig verifies the proxy.
	TLSConfig *tls.Config
	// QUICConfig tunes HTTP/3; nil means h3.DefaultQUICConfig().
	QUICConfig *quic.Config
	// Template is the proxy's CONNECT-UDP URI template; "" is the default.
	Template string
	// Authorizer answers the proxy's 407s; nil sends no credentials.
	Authorizer masque.Authorizer
	// Header holds extra fields for every tunnel request, such as a
	// Sec-CH-Geohash location hint.
	Header http.Header
	// Transport restricts the dialer to one transport; Auto races.
	Transport Transport
	// DisableDatagrams carries UDP in capsules on HTTP/3 too.
	DisableDatagrams bool
	// Forwarding offers QUIC-aware forwarded mode on HTTP/3 UDP tunnels
	// (h3.Config.Forwarding); HTTP/2 and HTTP/1.1 tunnels never forward.
	Forwarding bool
	// Relay, when set, makes this the second hop of a two-hop chain: the
	// connection to the proxy (the egress) runs through Relay (an ingress
	// relay, masqued -relay-to): HTTP/3 in a CONNECT-UDP tunnel to the
	// proxy's host:port (QUIC in QUIC), HTTP/2 and HTTP/1.1 in a CONNECT
	// tunnel (TLS in TLS). The relay then learns the proxy but never the
	// targets, and the proxy the relay's address, never the client's.
	// Relay is a *Conn or *Session of another Dialer, with its own
	// TLSConfig, Authorizer and Header, so that no credential or hint
	// meant for one hop reaches the other; give that Dialer's QUICConfig
	// h3.RelayQUICConfig(). Forwarding is ignored here (the relay's own
	// Dialer may forward).
	Relay Relay
	// FallbackDelay is how long HTTP/3 has before HTTP/2 starts too; 0 is
	// DefaultFallbackDelay.
	FallbackDelay time.Duration
	// Remember is how long a proxy reached only over TCP is dialled over
	// TCP alone; 0 is DefaultRemember.
	Remember time.Duration
	// RefusedGrace is how long, from the start of a racing Dial, HTTP/3
	// may still take once the proxy's TCP port refused the connection;
	// then Dial gives up with a *NotListeningError. 0 is
	// DefaultRefusedGrace. A proxy that serves HTTP/3 alone on a slow path
	// may need more, or Transport HTTP3.
	RefusedGrace time.Duration

	mu      sync.Mutex
	tcpOnly map[string]time.Time // proxy authority → until when
}

// Relay is what a Dialer reaches its proxy through in a chain: *Conn and
// *Session are ones.
type Relay interface {
	DialTCP(ctx context.Context, target string) (net.Conn, error)
	ListenUDP(ctx context.Context, target string) (net.PacketConn, error)
}

// Conn is a connection to a proxy that tunnels are opened on.
type Conn struct {
	tunneler
	transport Transport
	whyNotH3  error
}

// tunneler is what h3.Client and h2.Client have in common.
type tunneler interface {
	DialTCP(ctx context.Context, target string) (net.Conn, error)
	ListenUDP(ctx context.Context, target string) (*proxyconn.UDPConn, error)
	Datagrams() bool
	Usable() bool
	Close() error
}

// Transport reports how the connection reaches the proxy: HTTP3, HTTP2 or
// HTTP1.
func (c *Conn) Transport() Transport { return c.transport }

// FallbackReason says why a racing Dial did not use HTTP/3: the QUIC error,
// or that QUIC did not answer in time. It is nil for HTTP/3 connections and
// for Dials that did not race.
func (c *Conn) FallbackReason() error { return c.whyNotH3 }

// Datagrams reports whether UDP tunnels travel as QUIC DATAGRAM frames;
// otherwise DATAGRAM capsules on the stream carry them.
func (c *Conn) Datagrams() bool { return c.tunneler.Datagrams() }

// ListenUDP opens a UDP tunnel to target ("host:port") with CONNECT-UDP.
// The conn is a *proxyconn.UDPConn whichever transport carries it.
func (c *Conn) ListenUDP(ctx context.Context, target string) (net.PacketConn, error) {
	u, err := c.tunneler.ListenUDP(ctx, target)
	if err != nil {
		return nil, err // not a nil *UDPConn in a non-nil interface
	}
	return u, nil
}

// Dial connects to the proxy at proxyURL ("https://host:port").
func (d *Dialer) Dial(ctx context.Context, proxyURL string) (*Conn, error) {
	authority, err := proxyconn.Authority(proxyURL)
	if err != nil {
		return nil, err
	}
	if _, err := proxyconn.ParseTemplate(d.Template); err != nil {
		return nil, err // fails both transports alike: no race
	}
	switch d.Transport {
	case HTTP3:
		return d.dialH3(ctx, proxyURL)
	case HTTP2, HTTP1:
		return d.dialTCP(ctx, proxyURL)
	case Auto:
	default:
		return nil, fmt.Errorf("client: unknown transport %q", d.Transport)
	}
	if d.rememberedTCP(authority) {
		return d.dialTCP(ctx, proxyURL)
	}
	c, err := d.race(ctx, proxyURL, authority)
	if c != nil && c.transport != HTTP3 {
		d.remember(authority)
	}
	return c, err
}

// redial connects to proxyURL again for a Session whose connection went
// away, as Dial does except that a TCP win is not remembered: a connection
// that ended is no evidence against HTTP/3.
func (d *Dialer) redial(ctx context.Context, proxyURL string) (*Conn, error) {
	authority, err := proxyconn.Authority(proxyURL)
	if err != nil || d.Transport != Auto || d.rememberedTCP(authority) {
		return d.Dial(ctx, proxyURL)
	}
	return d.race(ctx, proxyURL, authority)
}

// race dials HTTP/3 at once and TCP after FallbackDelay or as soon as HTTP/3
// fails, and returns the first connection made; the other attempt is
// cancelled and waited for. A connection over TCP records why HTTP/3 lost.
// When TCP is refused, HTTP/3 has until RefusedGrace after the start, and
// then the failure is a *NotListeningError; a certificate that failed is
// reported once, as the *CertError; other failures join both errors.
func (d *Dialer) race(ctx context.Context, proxyURL, authority string) (*Conn, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   *Conn
		err error
	}
	h3c, tcpc := make(chan result, 1), make(chan result, 1)
	var wg sync.WaitGroup
	wg.Go(func() { c, err := d.dialH3(ctx, proxyURL); h3c <- result{c, err} })
	var h3err, tcpErr error
	pending, tcpStarted, h3Pending, gaveUp := 1, false, true, false
	// startTCP starts the TCP attempt, once: at the fallback delay or when
	// HTTP/3 fails, whichever comes first.
	startTCP := func() {
		if tcpStarted {
			return
		}
		tcpStarted = true
		pending++
		wg.Go(func() { c, err := d.dialTCP(ctx, proxyURL); tcpc <- result{c, err} })
	}
	timer := time.NewTimer(d.fallbackDelay())
	defer timer.Stop()
	var grace <-chan time.Time // armed once TCP is refused
	var won *Conn
	for pending > 0 && won == nil {
		select {
		case <-grace:
			gaveUp = true
			cancel() // the HTTP/3 attempt ends, and the loop with it
		case <-timer.C:
			startTCP()
		case r := <-h3c:
			pending--
			h3Pending = false
			if r.err == nil {
				won = r.c
				break
			}
			h3err = r.err
			startTCP()
		case r := <-tcpc:
			pending--
			if r.err == nil {
				won = r.c
				break
			}
			tcpErr = r.err
			if h3Pending && errors.Is(r.err, syscall.ECONNREFUSED) {
				t := time.NewTimer(time.Until(start.Add(d.refusedGrace())))
				defer t.Stop()
				grace = t.C
			}
		}
	}
	cancel()
	wg.Wait()
	// The loser may have connected before it saw the cancellation.
	for _, ch := range []chan result{h3c, tcpc} {
		select {
		case r := <-ch:
			if r.c != nil && r.c != won {
				r.c.Close()
			}
		default:
		}
	}
	if won != nil {
		if won.transport != HTTP3 {
			won.whyNotH3 = h3err
			if h3err == nil {
				won.whyNotH3 = fmt.Errorf("HTTP/3 did not answer within %s", d.fallbackDelay())
			}
		}
		return won, nil
	}
	var ce *CertError
	switch {
	case tcpErr == nil:
		return nil, h3err
	case gaveUp:
		return nil, &NotListeningError{Address: authority, Waited: d.refusedGrace(), Err: errors.Join(h3err, tcpErr)}
	case errors.As(h3err, &ce), errors.As(tcpErr, &ce):
		return nil, ce
	}
	return nil, fmt.Errorf("%w; %w", h3err, tcpErr) // one line, for command-line tools
}

func (d *Dialer) dialH3(ctx context.Context, proxyURL string) (*Conn, error) {
	cfg := h3.Config{
		TLSConfig:        d.TLSConfig,
		QUICConfig:       d.QUICConfig,
		Template:         d.Template,
		DisableDatagrams: d.DisableDatagrams,
		Authorizer:       d.Authorizer,
		Header:           d.Header,
		Forwarding:       d.Forwarding,
	}
	if d.Relay != nil {
		authority, _ := proxyconn.Authority(proxyURL) // Dial has checked it
		pc, err := d.Relay.ListenUDP(ctx, authority)
		if err != nil {
			return nil, fmt.Errorf("HTTP/3 through the relay: %w", err)
		}
		cfg.PacketConn = pc // h3.Dial closes it if it fails
	}
	c, err := h3.Dial(ctx, proxyURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP/3: %w", err)
	}
	return &Conn{tunneler: c, transport: HTTP3}, nil
}

func (d *Dialer) dialTCP(ctx context.Context, proxyURL string) (*Conn, error) {
	c, err := h2.Dial(ctx, proxyURL, h2.Config{
		TLSConfig:  d.TLSConfig,
		Template:   d.Template,
		Authorizer: d.Authorizer,
		Header:     d.Header,
		HTTP1:      d.Transport == HTTP1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d.Relay == nil {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			conn, err := d.Relay.DialTCP(ctx, addr)
			if err != nil {
				return nil, fmt.Errorf("through the relay: %w", err)
			}
			return conn, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("TLS over TCP: %w", err)
	}
	t := HTTP2
	if c.Protocol() != "h2" {
		t = HTTP1
	}
	return &Conn{tunneler: c, transport: t}, nil
}

func (d *Dialer) fallbackDelay() time.Duration {
	if d.FallbackDelay > 0 {
		return d.FallbackDelay
	}
	return DefaultFallbackDelay
}

func (d *Dialer) refusedGrace() time.Duration {
	if d.RefusedGrace > 0 {
		return d.RefusedGrace
	}
	return DefaultRefusedGrace
}

// rememberedTCP reports whether HTTP/3 to authority lost a race recently.
func (d *Dialer) rememberedTCP(authority string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	until, ok := d.tcpOnly[authority]
	if ok && time.Now().After(until) {
		delete(d.tcpOnly, authority)
		return false
	}
	return ok
}

// remember records that HTTP/3 to authority lost a race.
func (d *Dialer) remember(authority string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tcpOnly == nil {
		d.tcpOnly = make(map[string]time.Time)
	}
	keep := d.Remember
	if keep <= 0 {
		keep = DefaultRemember
	}
	d.tcpOnly[authority] = time.Now().Add(keep)
}

// Forget drops what the dialer remembers about every proxy, so that the next
// Dial tries HTTP/3 again (after a network change, say).
func (d *Dialer) Forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.tcpOnly)
}
