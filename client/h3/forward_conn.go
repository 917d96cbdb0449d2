package h3

import (
	"crypto/rand"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/udpgso"
)

// forwardConn is the socket of a Client's connection to the proxy when the
// client may forward (Config.Forwarding), as the quic.Transport of that
// connection reads it: forwarded packets, which the proxy sends from the
// same address as the connection's, are taken off before quic-go sees them,
// since quic-go would drop them as packets for no connection of its own.
//
// The split is by the first byte of the Destination Connection ID: the
// connection to the proxy uses CIDs with its top bit clear (proxyCIDs), and
// the proxy's client VCIDs have it set. A short-header packet from the proxy
// whose DCID is a routed VCID goes to its tunnel; one with the top bit set
// and no route is dropped and counted (a closed registration, or a forged
// CID), never handed to quic-go; everything else is quic-go's.
//
// quic-go runs it as a plain net.PacketConn (one packet per ReadFrom; its
// writes, and the forwarded ones, are gathered into GSO runs): a conn that offered quic-go its batched I/O would be read by
// quic-go directly, or through a ReadBatch whose messages hold one packet
// each, where this one reads whole UDP_GRO runs. It offers SyscallConn, so that quic-go still sets Don't
// Fragment and runs path MTU discovery. Where the kernel coalesces received
// runs of packets (UDP_GRO, Linux), the wrapper reads a run in one system
// call and serves quic-go's packets from it one per ReadFrom (groState);
// elsewhere it reads one packet per call.
type forwardConn struct {
	udp       *net.UDPConn
	out       *udpgso.Conn   // every write, quic-go's and forwarded, gathered into runs
	proxy     netip.AddrPort // the connection's remote address, where forwarded packets go
	proxyAddr *net.UDPAddr   // the same, handed to quic-go for each of its packets from there

	mu     sync.Mutex                 // serialises route changes
	routes atomic.Pointer[routeTable] // replaced whole under mu; read without it

	unrouted atomic.Uint64 // forwarded-looking packets for no route, dropped

	groState // batched reads: forward_conn_linux.go
}

// routeTable is the client VCIDs routed on a forwardConn.
type routeTable struct {
	byVCID map[string]*proxyconn.ForwardRoute
	lens   []int // the VCID lengths in byVCID, ascending
}

func newForwardConn(udp *net.UDPConn, proxy netip.AddrPort) *forwardConn {
	c := &forwardConn{udp: udp, out: udpgso.NewConn(udp), proxy: proxy, proxyAddr: net.UDPAddrFromAddrPort(proxy)}
	c.routes.Store(&routeTable{byVCID: map[string]*proxyconn.ForwardRoute{}})
	c.initGRO()
	return c
}

// readOne is ReadFrom one packet per system call: it returns the next
// packet that is quic-go's, after handing any forwarded packets before it
// to their tunnels.
func (c *forwardConn) readOne(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(p)
		if err != nil {
			return n, nil, err
		}
		if !c.forwarded(p[:n], from) {
			return n, c.addrOf(from), nil
		}
	}
}

// forwarded reports whether b, a packet from from, looks forwarded (a short
// header whose DCID has its top bit set), and if so hands it to its route,
// which copies it, or drops and counts it. A packet that does not look
// forwarded is quic-go's.
func (c *forwardConn) forwarded(b []byte, from netip.AddrPort) bool {
	if len(b) < 2 || b[0]&0x80 != 0 || b[1]&0x80 == 0 {
		return false
	}
	if r := c.route(b, from); r != nil {
		r.Deliver(b)
	} else {
		c.unrouted.Add(1)
	}
	return true
}

// addrOf returns from as a net.Addr, the proxy's without allocating.
func (c *forwardConn) addrOf(from netip.AddrPort) net.Addr {
	if from == c.proxy {
		return c.proxyAddr
	}
	return net.UDPAddrFromAddrPort(from)
}

// route returns the route of b's Destination Connection ID if b came from
// the proxy.
func (c *forwardConn) route(b []byte, from netip.AddrPort) *proxyconn.ForwardRoute {
	if from != c.proxy {
		return nil
	}
	t := c.routes.Load()
	for _, l := range t.lens {
		if len(b) < 1+l {
			break
		}
		if r := t.byVCID[string(b[1:1+l])]; r != nil {
			return r
		}
	}
	return nil
}

// WriteForwarded sends a forwarded packet to the proxy. It queues a copy,
// so that an upload's packets go out in UDP_SEGMENT runs.
func (c *forwardConn) WriteForwarded(b []byte) error {
	_, _, err := c.out.WriteMsgUDP(b, nil, c.proxyAddr)
	return err
}

// AddRoute routes r.VCID to r, unless it routes elsewhere already.
func (c *forwardConn) AddRoute(r *proxyconn.ForwardRoute) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.routes.Load()
	if _, taken := old.byVCID[string(r.VCID)]; taken {
		return false
	}
	m := make(map[string]*proxyconn.ForwardRoute, len(old.byVCID)+1)
	for k, v := range old.byVCID {
		m[k] = v
	}
	m[string(r.VCID)] = r
	c.routes.Store(newRouteTable(m))
	return true
}

// RemoveRoute removes r if r.VCID still routes to it.
func (c *forwardConn) RemoveRoute(r *proxyconn.ForwardRoute) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.routes.Load()
	if old.byVCID[string(r.VCID)] != r {
		return
	}
	m := make(map[string]*proxyconn.ForwardRoute, len(old.byVCID))
	for k, v := range old.byVCID {
		if v != r {
			m[k] = v
		}
	}
	c.routes.Store(newRouteTable(m))
}

func newRouteTable(m map[string]*proxyconn.ForwardRoute) *routeTable {
	t := &routeTable{byVCID: m}
	for k := range m {
		if !slices.Contains(t.lens, len(k)) {
			t.lens = append(t.lens, len(k))
		}
	}
	slices.Sort(t.lens)
	return t
}

func (c *forwardConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.out.WriteTo(p, addr) }
func (c *forwardConn) Close() error                                 { c.out.Close(); return c.udp.Close() }
func (c *forwardConn) LocalAddr() net.Addr                          { return c.udp.LocalAddr() }
func (c *forwardConn) SetDeadline(t time.Time) error                { return c.udp.SetDeadline(t) }
func (c *forwardConn) SetReadDeadline(t time.Time) error            { return c.udp.SetReadDeadline(t) }
func (c *forwardConn) SetWriteDeadline(t time.Time) error           { return c.udp.SetWriteDeadline(t) }
func (c *forwardConn) SetReadBuffer(n int) error                    { return c.udp.SetReadBuffer(n) }
func (c *forwardConn) SetWriteBuffer(n int) error                   { return c.udp.SetWriteBuffer(n) }

// SyscallConn lets quic-go set Don't Fragment on the socket (see
// forwardConn).
func (c *forwardConn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// proxyCIDs generates the CIDs of the client's connection to the proxy:
// random, with the top bit of the first byte clear, so that they never
// collide with a client VCID (forwardConn).
type proxyCIDs struct{}

// proxyCIDLen is 8 bytes, as the draft asks of CIDs that share a 4-tuple
// with others (here the VCIDs): 63 unpredictable bits.
const proxyCIDLen = 8

func (proxyCIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [proxyCIDLen]byte
	rand.Read(b[:])
	b[0] &^= 0x80
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (proxyCIDs) ConnectionIDLen() int { return proxyCIDLen }
