package tunnel

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
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

// NetDialer dials from the host's default source address with net.Dialer,
// trying addresses in turn and alternating address families (RFC 8305 §4).
// The zero NetDialer is ready to use.
type NetDialer struct {
	// AttemptTimeout bounds one connection attempt so that a black-holed
	// address leaves time for the next. Zero means 2 seconds.
	AttemptTimeout time.Duration
}

// Dial implements Dialer.
func (d *NetDialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, _ *http.Request) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no addresses to dial")
	}
	attempt := d.AttemptTimeout
	if attempt == 0 {
		attempt = 2 * time.Second
	}
	var errs []error
	for i, ap := range interleave(addrs) {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if i < len(addrs)-1 { // the last attempt may use all the time left
			actx, cancel = context.WithTimeout(ctx, attempt)
		}
		var nd net.Dialer
		c, err := nd.DialContext(actx, network, ap.String())
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
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
