package connectip

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
)

// Stream is a tunnel's request stream after the proxy's 2xx.
type Stream interface {
	io.ReadWriter
	CloseWrite() error // ends the sending side cleanly
	Abort() error      // resets both sides, unblocking Read and Write
}

// Datagrams are a tunnel's HTTP Datagrams, where the transport has them
// (capsule.StreamDatagrams over HTTP/3).
type Datagrams interface {
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// SendDatagram sends buf[off:]; buf[:off] is headroom of at least
	// capsule.MaxHeaderLen bytes for framing in place.
	SendDatagram(buf []byte, off int) error
}

// headroom is the space ClientConn leaves before a packet for the Context
// ID and its framing.
const headroom = capsule.MaxHeaderLen + 1

// ClientConn is the client side of a CONNECT-IP tunnel, on a request stream
// after the proxy's 2xx: it learns the addresses and routes the proxy
// assigns (Config), and carries IP packets in HTTP Datagrams, or in
// DATAGRAM capsules where the transport has no datagrams. ReadPacket and
// WritePacket may run concurrently with each other and with Close. A packet
// that cannot go (too large, malformed) is dropped, never the tunnel's end.
type ClientConn struct {
	str Stream
	dg  Datagrams // nil: capsules

	wmu  sync.Mutex // one writer of the stream at a time
	wbuf []byte     // WritePacket's framing buffer, under wmu

	in chan []byte // packets from capsules; datagrams are read directly

	cfgMu  sync.Mutex
	addrs  []netip.Prefix
	routes []netip.Prefix
	gotA   bool
	gotR   bool
	cfgCh  chan struct{} // closed once both arrived

	ctx    context.Context // done when the tunnel ends
	cancel context.CancelCauseFunc
	done   chan struct{} // the capsule reader has returned
}

// NewClientConn starts the client side of a tunnel on str, the request
// stream after a 2xx, with dg as its datagrams (nil for capsules only). It
// asks for an address of each family (ADDRESS_REQUEST).
func NewClientConn(str Stream, dg Datagrams) *ClientConn {
	c := &ClientConn{str: str, dg: dg, in: make(chan []byte, 256), cfgCh: make(chan struct{}),
		done: make(chan struct{}), wbuf: make([]byte, headroom+65535)}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	go c.readCapsules()
	req := AppendAddressRequest(nil, []Address{
		{ID: 1, Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 32)}, // any IPv4 address
		{ID: 2, Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 128)},
	})
	c.wmu.Lock()
	if _, err := str.Write(req); err != nil {
		c.cancel(err)
	}
	c.wmu.Unlock()
	return c
}

// Config waits for the proxy's first address assignment and route
// advertisement and returns them: the addresses to give the device, and the
// routes as prefixes.
func (c *ClientConn) Config(ctx context.Context) (addrs, routes []netip.Prefix, err error) {
	select {
	case <-c.cfgCh:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, nil, c.err()
	}
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	return c.addrs, c.routes, nil
}

func (c *ClientConn) err() error {
	if err := context.Cause(c.ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return net.ErrClosed
}

// Done is closed when the tunnel has ended.
func (c *ClientConn) Done() <-chan struct{} { return c.ctx.Done() }

// Err is why the tunnel ended: net.ErrClosed after Close or a clean end.
func (c *ClientConn) Err() error { return c.err() }

func (c *ClientConn) readCapsules() {
	defer close(c.done)
	cr := capsule.NewReader(bufio.NewReaderSize(c.str, 16<<10))
	cr.HandleOther(IsCapsuleType, c.handleCapsule)
	for {
		buf := make([]byte, 65536) // the client's own path: one allocation a capsule is fine
		n, err := cr.ReadDatagram(buf)
		switch {
		case errors.Is(err, capsule.ErrTooLarge):
			continue
		case errors.Is(err, io.EOF):
			c.cancel(errors.New("connect-ip: the proxy ended the tunnel"))
			return
		case err != nil:
			c.cancel(err)
			return
		}
		pkt, err := capsule.SplitContext(buf[:n])
		if err != nil {
			continue
		}
		select {
		case c.in <- pkt:
		default: // a full queue drops, as a link does
		}
	}
}

func (c *ClientConn) handleCapsule(typ uint64, v []byte) error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	switch typ {
	case TypeAddressAssign:
		var addrs []netip.Prefix
		if err := ParseAddresses(v, func(a Address) {
			if !a.Prefix.Addr().IsUnspecified() {
				addrs = append(addrs, a.Prefix)
			}
		}); err != nil {
			return err
		}
		c.addrs, c.gotA = addrs, true
	case TypeRouteAdvertisement:
		var routes []netip.Prefix
		if err := ParseRoutes(v, func(r Range) { routes = AppendRangePrefixes(routes, r.Start, r.End) }); err != nil {
			return err
		}
		c.routes, c.gotR = routes, true
	case TypeAddressRequest:
		return nil // we assign the proxy nothing
	}
	if c.gotA && c.gotR {
		select {
		case <-c.cfgCh:
		default:
			close(c.cfgCh)
		}
	}
	return nil
}

// AppendRangePrefixes appends the fewest prefixes that cover start..end.
func AppendRangePrefixes(out []netip.Prefix, start, end netip.Addr) []netip.Prefix {
	for !end.Less(start) {
		bits := start.BitLen()
		// The largest prefix at start that does not pass end.
		for bits > 0 {
			p, _ := start.Prefix(bits - 1)
			if p.Addr() != start || lastAddr(p).Compare(end) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(start, bits)
		out = append(out, p)
		last := lastAddr(p)
		if !last.Next().IsValid() || last == end {
			break
		}
		start = last.Next()
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr { return PrefixRange(p, 0).End }

// ReadPacket reads the next IP packet from the proxy into b.
func (c *ClientConn) ReadPacket(b []byte) (int, error) {
	for {
		if c.dg == nil {
			select {
			case p := <-c.in:
				return copy(b, p), nil
			case <-c.ctx.Done():
				return 0, c.err()
			}
		}
		select {
		case p := <-c.in:
			return copy(b, p), nil
		default:
		}
		d, err := c.dg.ReceiveDatagram(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return 0, c.err()
			}
			return 0, err
		}
		if pkt, err := capsule.SplitContext(d); err == nil {
			return copy(b, pkt), nil
		}
	}
}

// WritePacket sends one IP packet to the proxy. A packet too large for the
// path is dropped (masque.ErrDatagramTooLarge in the error).
func (c *ClientConn) WritePacket(p []byte) error {
	if err := c.ctx.Err(); err != nil {
		return c.err()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(p) > len(c.wbuf)-headroom {
		return masque.ErrDatagramTooLarge
	}
	n := copy(c.wbuf[headroom:], p)
	b := c.wbuf[:headroom+n]
	b[headroom-1] = capsule.ContextUDP
	if c.dg != nil {
		return c.dg.SendDatagram(b, headroom-1)
	}
	start := capsule.PutDatagramHeader(b, headroom-1)
	_, err := c.str.Write(b[start:])
	return err
}

// Close ends the tunnel and waits for its reader.
func (c *ClientConn) Close() error {
	c.cancel(net.ErrClosed)
	c.wmu.Lock()
	err := c.str.CloseWrite()
	c.wmu.Unlock()
	_ = c.str.Abort()
	<-c.done
	return err
}
