package iptunnel

import (
	"net/netip"
	"sync"
)

// pool hands out single addresses of a prefix, one per tunnel. The prefix's
// first address is the TUN device's own (the tunnels' gateway), and for IPv4
// the last is the broadcast address: neither is handed out.
type pool struct {
	prefix  netip.Prefix
	gateway netip.Addr

	mu   sync.Mutex
	next netip.Addr
	used map[netip.Addr]struct{}
}

func newPool(p netip.Prefix) *pool {
	p = p.Masked()
	gw := p.Addr().Next()
	return &pool{prefix: p, gateway: gw, next: gw.Next(), used: make(map[netip.Addr]struct{})}
}

// usable reports whether a may be handed out.
func (p *pool) usable(a netip.Addr) bool {
	if !p.prefix.Contains(a) || a == p.prefix.Addr() || a == p.gateway {
		return false
	}
	return !a.Is4() || p.prefix.Bits() >= 31 || p.prefix.Contains(a.Next())
}

// get returns a free address, or false when the pool is exhausted. It
// scans at most a few thousand addresses.
func (p *pool) get() (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.next
	for range 1 << 16 {
		if !p.usable(a) {
			a = p.gateway.Next()
			if !p.usable(a) {
				return netip.Addr{}, false
			}
		}
		if _, taken := p.used[a]; !taken {
			p.used[a] = struct{}{}
			p.next = a.Next()
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

func (p *pool) put(a netip.Addr) {
	p.mu.Lock()
	delete(p.used, a)
	p.mu.Unlock()
}
