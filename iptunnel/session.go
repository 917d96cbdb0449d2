package iptunnel

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/connectip"
	"github.com/masqued/masqued/tunnel"
)

// packet is a pooled buffer holding a packet at buf[headroom:headroom+n].
type packet struct {
	buf *[]byte
	n   int
}

// Session is one CONNECT-IP tunnel: its addresses, scope and relay.
type Session struct {
	s      *Server
	t      *tunnel.IPTunnel
	scope  Scope
	addrs  [2]netip.Addr // IPv4, IPv6 assigned; zero if that pool is absent
	natted [2]bool       // an egress address is set in the NAT map

	down chan packet // packets for the client; the writer sends them
	ctrl chan []byte // capsules for the client; the writer sends them

	ctx    context.Context // done when the tunnel ends
	cancel context.CancelFunc

	last     atomic.Int64 // UnixNano of the last packet either way
	idle     atomic.Bool  // ended by the idle timeout
	closeMu  sync.Once
	stream   tunnel.Stream       // set by Relay
	datagram tunnel.DatagramConn // set by Relay; nil: capsules
}

// enqueue hands a packet from the device to the writer, or drops it.
func (se *Session) enqueue(bp *[]byte, n int) {
	select {
	case se.down <- packet{bp, n}:
	default:
		se.s.metrics.drop(dropQueueFull)
		se.s.bufs.Put(bp)
	}
}

// errMTU ends a tunnel whose QUIC path cannot carry 1280-byte packets.
var errMTU = errors.New("connect-ip: the QUIC path cannot carry 1280-byte packets (RFC 9484 §10.1)")

// Relay runs the tunnel until the client ends it, the idle timeout, a
// failure or Server.Close, and then closes it. str is the request stream
// after the 2xx; dc carries HTTP Datagrams where the transport has them
// (nil: DATAGRAM capsules on str). It returns the error that ended the
// tunnel, nil for a clean end.
func (se *Session) Relay(str tunnel.Stream, dc tunnel.DatagramConn) error {
	se.stream, se.datagram = str, dc
	defer se.t.Close()
	se.touch()
	stop := context.AfterFunc(se.ctx, func() { _ = str.Abort() })
	defer stop()

	// The client's configuration: its addresses and the routes its scope
	// allows (RFC 9484 §4.7), unprompted, before any packet.
	se.ctrl <- connectip.AppendAddressAssign(nil, se.assigned(nil))
	se.ctrl <- connectip.AppendRouteAdvertisement(nil, se.scope.routes(se.addrs[0].IsValid(), se.addrs[1].IsValid()))

	var wg sync.WaitGroup
	writeErr := make(chan error, 1)
	wg.Go(func() { writeErr <- se.write() })
	if dc != nil {
		wg.Go(se.readDatagrams)
		if err := se.probeMTU(); err != nil {
			se.t.Failed("connection_terminated")
			se.cancel()
			wg.Wait()
			return err
		}
	}
	idle := se.watchIdle()
	err := se.readCapsules()
	idle.Stop()
	se.cancel()
	wg.Wait()
	if werr := <-writeErr; err == nil && !se.idle.Load() {
		err = werr
	}
	switch {
	case se.idle.Load():
		se.t.Idle()
		return nil
	case err == nil:
		_ = str.CloseWrite()
	default:
		_ = str.Abort()
	}
	return err
}

// Close ends a tunnel that the front could not relay (Relay closes its
// own). It is safe to call more than once.
func (se *Session) Close() error { return se.t.Close() }

// releaser is what the tunnel core closes when the tunnel closes.
type releaser struct{ se *Session }

// Close releases the tunnel's addresses and NAT entries, and the packets
// queued for it.
func (r releaser) Close() error {
	se := r.se
	var err error
	se.closeMu.Do(func() {
		se.cancel()
		s := se.s
		s.mu.Lock()
		for _, a := range se.addrs {
			if a.IsValid() && s.sessions[a] == se {
				delete(s.sessions, a)
			}
		}
		s.mu.Unlock()
		for i, a := range se.addrs {
			if !a.IsValid() {
				continue
			}
			if se.natted[i] {
				err = errors.Join(err, s.nat.unset(a))
			}
			s.pools[i].put(a)
		}
		for { // give back what the writer did not send
			select {
			case p := <-se.down:
				s.bufs.Put(p.buf)
			default:
				return
			}
		}
	})
	return err
}

// assigned appends the tunnel's addresses as ADDRESS_ASSIGN entries.
func (se *Session) assigned(out []connectip.Address) []connectip.Address {
	for _, a := range se.addrs {
		if a.IsValid() {
			out = append(out, connectip.Address{Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
	}
	return out
}

func (se *Session) touch() { se.last.Store(time.Now().UnixNano()) }

// watchIdle ends the tunnel once no packet went either way for the idle
// timeout; Stop the timer when the tunnel ends.
func (se *Session) watchIdle() *time.Timer {
	limit := se.t.IdleTimeout()
	var t *time.Timer
	t = time.AfterFunc(limit, func() {
		since := time.Duration(time.Now().UnixNano() - se.last.Load())
		if since >= limit {
			se.idle.Store(true)
			se.cancel()
			return
		}
		t.Reset(limit - since)
	})
	return t
}

// probeMTU sends a 1280-byte ICMPv6 echo request to the client (RFC 9484
// §10.1) and fails if the QUIC path cannot carry it. Without an IPv6 address
// it sends nothing: IPv4 links may be smaller.
func (se *Session) probeMTU() error {
	client, gw := se.addrs[1], se.s.pools[1]
	if !client.IsValid() {
		return nil
	}
	bp := se.s.bufs.Get().(*[]byte)
	defer se.s.bufs.Put(bp)
	b := *bp
	n := appendEcho6(b[headroom:], gw.gateway, client, 1280)
	b[headroom-1] = capsule.ContextUDP
	err := se.datagram.SendDatagram(b[:headroom+n], headroom-1)
	if errors.Is(err, masque.ErrDatagramTooLarge) {
		return errMTU
	}
	return nil
}

// write is the stream's one writer: it sends queued capsules and the
// device's packets for the client, until the tunnel ends.
func (se *Session) write() error {
	for {
		select {
		case <-se.ctx.Done():
			return nil
		case c := <-se.ctrl:
			if _, err := se.stream.Write(c); err != nil {
				se.cancel()
				return err
			}
		case p := <-se.down:
			err := se.sendDown(p)
			se.s.bufs.Put(p.buf)
			if err != nil {
				se.cancel()
				return err
			}
		}
	}
}

// sendDown sends one packet to the client. Only a failing stream is an
// error: packets that do not fit are dropped and counted.
func (se *Session) sendDown(p packet) error {
	b := (*p.buf)[:headroom+p.n]
	pkt := b[headroom:]
	h, ok := parseHeader(pkt)
	if !ok {
		se.s.metrics.drop(dropMalformed)
		return nil
	}
	if !se.scope.allows(h.src, h.proto) && !isICMPError(pkt, h) {
		se.s.metrics.drop(dropOutOfScope)
		return nil
	}
	if !decrementHopLimit(pkt) {
		se.s.metrics.drop(dropHopLimit)
		return nil
	}
	b[headroom-1] = capsule.ContextUDP
	if se.datagram != nil {
		err := se.datagram.SendDatagram(b, headroom-1)
		switch {
		case errors.Is(err, masque.ErrDatagramTooLarge):
			se.s.metrics.drop(dropTooLarge)
			se.tooBig(pkt, h)
			return nil
		case err != nil:
			se.s.metrics.drop(dropWriteError)
			return nil
		}
	} else {
		start := capsule.PutDatagramHeader(b, headroom-1)
		if _, err := se.stream.Write(b[start:]); err != nil {
			return err
		}
	}
	se.t.Down(p.n)
	se.touch()
	return nil
}

// tooBig answers a packet for the client that the QUIC path could not carry
// with a Packet Too Big (IPv4: fragmentation needed) to its sender, through
// the device (RFC 9484 §10.1). The MTU it names is the least a tunnel
// carries.
func (se *Session) tooBig(pkt []byte, h header) {
	gw := se.gateway(h.src)
	if !gw.IsValid() {
		return
	}
	bp := se.s.bufs.Get().(*[]byte)
	defer se.s.bufs.Put(bp)
	if n := appendICMPError((*bp)[headroom:], gw, pkt, h, icmpTooBig, 1280); n > 0 {
		if _, err := se.s.dev.Write((*bp)[headroom : headroom+n]); err == nil {
			se.s.metrics.icmp.Inc()
		}
	}
}

// gateway is the device's address of a's family.
func (se *Session) gateway(a netip.Addr) netip.Addr {
	i := 1
	if a.Is4() {
		i = 0
	}
	if p := se.s.pools[i]; p != nil {
		return p.gateway
	}
	return netip.Addr{}
}

// readDatagrams reads the client's HTTP Datagrams until the tunnel ends.
func (se *Session) readDatagrams() {
	for {
		d, err := se.datagram.ReceiveDatagram(se.ctx)
		if err != nil {
			se.cancel()
			return
		}
		pkt, err := capsule.SplitContext(d)
		if err != nil {
			se.s.metrics.drop(dropMalformed)
			continue
		}
		se.up(pkt)
	}
}

// readCapsules reads the request stream: DATAGRAM capsules (packets) and
// the CONNECT-IP capsules, until the client ends the stream (nil) or it
// fails.
func (se *Session) readCapsules() error {
	br := bufio.NewReaderSize(se.stream, 4096)
	cr := capsule.NewReader(br)
	cr.HandleOther(connectip.IsCapsuleType, se.handleCapsule)
	bp := se.s.bufs.Get().(*[]byte)
	defer se.s.bufs.Put(bp)
	buf := (*bp)[headroom-1:]
	for {
		n, err := cr.ReadDatagram(buf)
		switch {
		case errors.Is(err, capsule.ErrTooLarge):
			se.s.metrics.drop(dropTooLarge)
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			if se.ctx.Err() != nil {
				return nil
			}
			return err
		}
		pkt, err := capsule.SplitContext(buf[:n])
		if err != nil {
			se.s.metrics.drop(dropMalformed)
			continue
		}
		se.up(pkt)
	}
}

// handleCapsule handles a CONNECT-IP capsule from the client. A malformed
// one aborts the stream (RFC 9297 §3.3).
func (se *Session) handleCapsule(typ uint64, v []byte) error {
	switch typ {
	case connectip.TypeAddressRequest:
		var reply []connectip.Address
		err := connectip.ParseAddresses(v, func(a connectip.Address) {
			p := netip.PrefixFrom(netip.IPv4Unspecified(), 32)
			i := 0
			if a.Prefix.Addr().Is6() {
				p, i = netip.PrefixFrom(netip.IPv6Unspecified(), 128), 1
			}
			if got := se.addrs[i]; got.IsValid() {
				p = netip.PrefixFrom(got, got.BitLen())
			}
			reply = append(reply, connectip.Address{ID: a.ID, Prefix: p})
		})
		if err != nil || len(reply) == 0 {
			return connectip.ErrMalformed
		}
		select {
		case se.ctrl <- connectip.AppendAddressAssign(nil, reply):
		default: // a client flooding requests gets no answer to some
		}
		return nil
	case connectip.TypeAddressAssign:
		return connectip.ParseAddresses(v, func(connectip.Address) {})
	case connectip.TypeRouteAdvertisement:
		return connectip.ParseRoutes(v, func(connectip.Range) {})
	}
	return nil
}

// up checks a packet from the client and writes it to the device: its
// source must be the tunnel's, its destination in scope and allowed by the
// Policy. A refused packet is answered with an ICMP error (RFC 9484
// §4.4.1).
func (se *Session) up(pkt []byte) {
	h, ok := parseHeader(pkt)
	if !ok {
		se.s.metrics.drop(dropMalformed)
		return
	}
	se.touch()
	if h.src != se.addrs[0] && h.src != se.addrs[1] {
		se.s.metrics.drop(dropBadSource)
		se.refuse(pkt, h, icmpBadSource)
		return
	}
	gw := se.gateway(h.dst)
	if h.dst == gw && h.proto == protoICMPv6 && h.transport < len(pkt) && pkt[h.transport] == 129 {
		return // the echo reply to probeMTU
	}
	if !se.scope.allows(h.dst, h.proto) {
		se.s.metrics.drop(dropOutOfScope)
		se.refuse(pkt, h, icmpProhibited)
		return
	}
	if !se.t.Allowed(netip.AddrPortFrom(h.dst, h.dstPort)) {
		se.s.metrics.drop(dropProhibited)
		se.refuse(pkt, h, icmpProhibited)
		return
	}
	if _, err := se.s.dev.Write(pkt); err != nil {
		se.s.metrics.drop(dropWriteError)
		return
	}
	se.t.Up(len(pkt))
}

// refuse sends the client an ICMP error about its packet pkt, through the
// writer's queue.
func (se *Session) refuse(pkt []byte, h header, kind icmpKind) {
	gw := se.gateway(h.src)
	if !gw.IsValid() {
		return
	}
	bp := se.s.bufs.Get().(*[]byte)
	n := appendICMPError((*bp)[headroom:], gw, pkt, h, kind, 0)
	if n == 0 {
		se.s.bufs.Put(bp)
		return
	}
	se.s.metrics.icmp.Inc()
	se.enqueue(bp, n)
}
