package tunnel

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Resolver looks up a target's addresses. *net.Resolver satisfies it; a DoH
// resolver can too.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer is the egress seam: it connects to a target whose addresses the
// policy has already allowed. Egress-address selection (geoegress) plugs in
// here.
//
// Dial connects to one of addrs, given in order of preference, over network
// "tcp" or "udp" (a connected UDP socket). r is the request the tunnel serves,
// for egress selection; Dial must not retain it. Dial is called concurrently.
type Dialer interface {
	Dial(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, error)
}

// DetailDialer is a Dialer that may have something to tell the client about a
// tunnel it opened, such as a client hint it ignored. When a Config's Dialer
// is one, the core calls DialDetail instead of Dial and sends a non-empty
// detail in a Proxy-Status field of the success response (Tunnel.Header).
type DetailDialer interface {
	Dialer
	DialDetail(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (c net.Conn, detail string, err error)
}

// Source is where a tunnel's connections leave from: a local address for each
// family. The zero Addr lets the host choose, as an unbound socket does.
type Source struct {
	IPv4, IPv6 netip.Addr
	// FreeBind binds IPv6 even though the address is not configured on an
	// interface (IPV6_FREEBIND): for addresses of a prefix routed to the host
	// (AnyIP, "ip -6 route add local PREFIX dev lo").
	FreeBind bool
}

// ForFamily returns the source address for a's family.
func (s Source) ForFamily(a netip.Addr) netip.Addr {
	if a.Is4() {
		return s.IPv4
	}
	return s.IPv6
}

// NetDialer connects with Happy Eyeballs (RFC 8305): attempts interleave the
// address families, IPv6 first, and start AttemptDelay apart or as soon as the
// previous attempt fails; the first connection wins and the others are
// cancelled. Unlike net.Dialer with a LocalAddr, it binds each family to its
// own source address, so a pinned egress address survives a fallback from
// IPv6 to IPv4. The zero NetDialer is ready to use.
type NetDialer struct {
	// AttemptDelay is the Connection Attempt Delay (RFC 8305 §5); 0 = 250 ms.
	AttemptDelay time.Duration
}

// Dial implements Dialer from the host's default source addresses.
func (d *NetDialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, _ *http.Request) (net.Conn, error) {
	return d.DialFrom(ctx, network, addrs, Source{})
}

// DialFrom connects to one of addrs (in order of preference) from src. A UDP
// "connection" cannot fail the way a handshake can, so for "udp" the first
// address whose socket can be bound and connected wins.
func (d *NetDialer) DialFrom(ctx context.Context, network string, addrs []netip.AddrPort, src Source) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no addresses to dial")
	}
	addrs = interleave(addrs)
	if network == "udp" {
		var errs []error
		for _, ap := range addrs {
			c, err := dialOne(ctx, network, ap, src)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	delay := d.AttemptDelay
	if delay == 0 {
		delay = 250 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	// Room for every attempt: a late one never blocks, and the drain below
	// collects them all before DialFrom returns.
	results := make(chan result, len(addrs))
	next, pending := 0, 0
	start := func() {
		ap := addrs[next]
		next++
		pending++
		go func() {
			c, err := dialOne(ctx, network, ap, src)
			results <- result{c, err}
		}()
	}
	start()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var won net.Conn
	var errs []error
	for won == nil && pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err != nil {
				errs = append(errs, r.err)
				if next < len(addrs) { // a failure starts the next attempt now
					start()
					timer.Reset(delay)
				}
				continue
			}
			won = r.c
		case <-timer.C:
			if next < len(addrs) {
				start()
				timer.Reset(delay)
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			cancel()
			for ; pending > 0; pending-- {
				if r := <-results; r.c != nil {
					r.c.Close()
				}
			}
		}
	}
	cancel()
	for ; pending > 0; pending-- { // the losers: cancelled, closed if they won too late
		if r := <-results; r.c != nil {
			r.c.Close()
		}
	}
	if won != nil {
		return won, nil
	}
	return nil, errors.Join(errs...)
}

// dialOne connects to ap from src's address for ap's family.
func dialOne(ctx context.Context, network string, ap netip.AddrPort, src Source) (net.Conn, error) {
	var nd net.Dialer
	if local := src.ForFamily(ap.Addr()); local.IsValid() {
		freeBind := src.FreeBind && local.Is6()
		switch network {
		case "tcp":
			nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
			nd.Control = func(_, _ string, rc syscall.RawConn) error { return bindOptions(rc, true, freeBind) }
		case "udp":
			nd.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
			nd.Control = func(_, _ string, rc syscall.RawConn) error { return bindOptions(rc, false, freeBind) }
		}
	}
	return nd.DialContext(ctx, network, ap.String())
}

// interleave orders addresses IPv6, IPv4, IPv6, … keeping the order within
// each family, as RFC 8305 §4 recommends.
func interleave(addrs []netip.AddrPort) []netip.AddrPort {
	var v6, v4 []netip.AddrPort
	for _, a := range addrs {
		if a.Addr().Unmap().Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for i := 0; i < len(v6) || i < len(v4); i++ {
		if i < len(v6) {
			out = append(out, v6[i])
		}
		if i < len(v4) {
			out = append(out, v4[i])
		}
	}
	return out
}
