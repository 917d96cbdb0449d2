package localproxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpQueueLen bounds the datagrams waiting for one destination's tunnel:
// enough to cover the round trip that opens it.
const udpQueueLen = 64

// maxDatagram is the largest UDP datagram a socket can deliver.
const maxDatagram = 65535

// udpBufs holds datagram buffers for the queues, sized by use: most are
// small, and a large datagram grows the buffer it lands in.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// associate serves a UDP ASSOCIATE request on its control connection c:
// it opens a relay socket on the IP that c arrived on, tells the client
// where it is, and relays until c ends. want is the address the client
// says it will send from; a port in it locks the association to that port.
func (s *SOCKS5Server) associate(c net.Conn, want socksAddr) {
	local, remote := addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr())
	relay, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		s.logger().Warn("socks5: no UDP relay socket", "error", err)
		writeReply(c, replyGeneralFailure, socksAddr{})
		return
	}
	ctx, cancel := context.WithCancel(s.g.context())
	a := &association{
		s:        s,
		relay:    relay,
		ctx:      ctx,
		cancel:   cancel,
		clientIP: remote.Addr().Unmap(),
		flows:    map[socksAddr]*udpFlow{},
	}
	if want.port != 0 {
		a.client = netip.AddrPortFrom(a.clientIP, want.port)
	}
	bound := relay.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := writeReply(c, replySucceeded, socksAddr{ip: bound.Addr().Unmap(), port: bound.Port()}); err != nil {
		cancel()
		relay.Close()
		return
	}

	stop := context.AfterFunc(ctx, func() { c.Close() }) // the relay failed, or the server closes
	a.wg.Add(1)
	go a.uplink()
	discardUntilClosed(c)
	stop()
	cancel()
	relay.Close()
	a.wg.Wait()
}

// addrPortOf returns a TCP or UDP address as a netip.AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// association is one UDP ASSOCIATE: a relay socket for one client, and a
// CONNECT-UDP tunnel (a flow) per destination the client sends to.
type association struct {
	s        *SOCKS5Server
	relay    *net.UDPConn
	ctx      context.Context // done when the association ends
	cancel   context.CancelFunc
	clientIP netip.Addr
	// client is the one source datagrams are accepted from: the client's
	// IP and the port of its first datagram (or the port it announced). The
	// uplink sets it before any flow starts; it does not change after.
	client netip.AddrPort
	wg     sync.WaitGroup // uplink and the flows' goroutines

	mu    sync.Mutex             // guards flows
	flows map[socksAddr]*udpFlow // by destination as the client named it
}

// uplink reads the client's datagrams and queues each for its destination's
// flow, starting the flow on first use. A datagram from another source, a
// fragment, a malformed header, a destination past the limit or a full
// queue is dropped.
func (a *association) uplink() {
	defer a.wg.Done()
	defer a.cancel()
	var buf [maxDatagram]byte
	for {
		n, from, err := a.relay.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			return // the relay socket is closed, or broken: either ends the association
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != a.clientIP || (a.client.IsValid() && from != a.client) {
			continue
		}
		dst, hlen, err := parseUDPHeader(buf[:n])
		if err != nil {
			continue
		}
		if !a.client.IsValid() {
			a.client = from
		}
		if f := a.flow(dst); f != nil {
			b := udpBufs.Get().(*[]byte)
			*b = append((*b)[:0], buf[hlen:n]...)
			select {
			case f.queue <- b:
			default:
				udpBufs.Put(b)
			}
		}
	}
}

// flow returns dst's flow, starting it if it is new, or nil if the
// association has as many flows as it may.
func (a *association) flow(dst socksAddr) *udpFlow {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.flows[dst]; f != nil {
		return f
	}
	if len(a.flows) >= orDefault(a.s.MaxUDPFlows, 64) {
		return nil
	}
	f := &udpFlow{a: a, dst: dst, queue: make(chan *[]byte, udpQueueLen)}
	f.ctx, f.cancel = context.WithCancel(a.ctx)
	f.hdr = appendUDPHeader(nil, dst)
	a.flows[dst] = f
	a.wg.Add(1) // the uplink holds a count, so Wait cannot have returned yet
	go f.run()
	return f
}

// remove forgets f, so that the next datagram to its destination starts a
// new flow.
func (a *association) remove(f *udpFlow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.flows[f.dst] == f {
		delete(a.flows, f.dst)
	}
}

// udpFlow relays one destination's datagrams through its own CONNECT-UDP
// tunnel.
type udpFlow struct {
	a      *association
	dst    socksAddr
	hdr    []byte // the SOCKS UDP header of datagrams from dst
	queue  chan *[]byte
	ctx    context.Context // done when the flow ends
	cancel context.CancelFunc
	last   atomic.Int64 // Unix nanoseconds of the last datagram either way
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// run opens the tunnel, then writes the queued datagrams into it until the
// flow idles out, its tunnel ends or the association ends.
func (f *udpFlow) run() {
	defer f.a.wg.Done()
	defer f.cancel()
	defer f.a.remove(f)
	s := f.a.s
	ctx, cancel := context.WithTimeout(f.ctx, orDefault(s.DialTimeout, 30*time.Second))
	pc, err := s.Tunneler.ListenUDP(ctx, f.dst.String())
	cancel()
	if err != nil {
		logFailure(s.logger(), s.LogTargets, "socks5: UDP tunnel failed", f.dst.String(), err)
		return
	}
	defer pc.Close()
	f.a.wg.Add(1)
	go f.downlink(pc)

	idle := orDefault(s.UDPIdleTimeout, 2*time.Minute)
	f.touch()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case b := <-f.queue:
			f.touch()
			_, err := pc.WriteTo(*b, nil)
			udpBufs.Put(b)
			if err != nil {
				return
			}
		case <-timer.C:
			quiet := time.Since(time.Unix(0, f.last.Load()))
			if quiet >= idle {
				return
			}
			timer.Reset(idle - quiet)
		case <-f.ctx.Done():
			return
		}
	}
}

// downlink sends what the tunnel receives to the client, with dst's header,
// until the tunnel ends; then it ends the flow.
func (f *udpFlow) downlink(pc net.PacketConn) {
	defer f.a.wg.Done()
	defer f.cancel()
	buf := make([]byte, len(f.hdr)+maxDatagram)
	copy(buf, f.hdr)
	for {
		n, _, err := pc.ReadFrom(buf[len(f.hdr):])
		if err != nil {
			return
		}
		f.touch()
		f.a.relay.WriteToUDPAddrPort(buf[:len(f.hdr)+n], f.a.client)
	}
}
