package udpgso

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Conn is a UDP socket for quic-go (a quic.OOBCapablePacketConn) whose
// writes are gathered and sent in runs. A write copies the packet into a
// queue and returns; a sender goroutine takes the queue whole and sends
// each address's packets in order, consecutive ones of equal size (the last
// of a run may be shorter) in one UDP_SEGMENT send. While one send is in the
// kernel the next burst gathers, so the runs grow with the load and a lone
// packet goes out at once; a small one (an ACK) written while the Conn is
// idle goes straight to the socket. The queue's buffers come from a pool while there
// is something to send: an idle Conn holds none. Reads and everything else
// pass through to the socket.
//
// A write that quic-go made a run of itself (longer than the UDP_SEGMENT
// size its control messages give) keeps its place in the queue and goes out
// as it is; a shorter one is a single packet, whatever size quic-go put
// there. Errors of the sends are not the writer's: a datagram socket may
// lose packets, and QUIC recovers them as any loss; a kernel that refuses
// UDP_SEGMENT makes the Conn send one packet per call from then on.
//
// Close stops the sender after it sent what was queued; the socket stays
// open (the caller owns it), and writes after Close go straight to it. A
// Conn is safe for concurrent use.
type Conn struct {
	*net.UDPConn
	gso atomic.Bool // the kernel takes UDP_SEGMENT sends

	mu      sync.Mutex
	queued  *batch    // the writes the sender has not taken, nil if none; guarded by mu
	wake    sync.Cond // the sender waits for writes; on mu
	room    sync.Cond // writers wait for a full queue to be taken; on mu
	closed  bool      // guarded by mu
	sending bool      // the sender holds a batch; guarded by mu
	done    chan struct{}
}

// Limits of one batch: what the sender takes at once.
const (
	batchBytes   = 128 << 10
	batchPackets = 128
)

// directBelow is the size under which a packet written while nothing is
// queued or being sent goes straight to the socket: a packet that small is
// an ACK or other control, which comes alone.
const directBelow = 512

// batches holds the batches of all Conns: a Conn holds one only while it
// has something to send, so that an idle client's socket costs no memory.
var batches = sync.Pool{New: func() any { return newBatch() }}

// NewConn starts the sender for uc. It sends nothing itself: it gathers
// only where the kernel has UDP_SEGMENT, and elsewhere writes straight to
// uc.
func NewConn(uc *net.UDPConn) *Conn {
	c := &Conn{UDPConn: uc, done: make(chan struct{})}
	c.wake.L, c.room.L = &c.mu, &c.mu
	c.gso.Store(Supported(uc))
	if !c.gso.Load() {
		c.closed = true
		close(c.done)
		return c
	}
	go c.send()
	return c
}

// Close sends what is queued and stops the sender. It does not close the
// socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.wake.Signal()
	c.room.Broadcast()
	c.mu.Unlock()
	<-c.done
	return nil
}

// WriteMsgUDP queues b, to be sent to addr with the control messages oob.
// It returns at once, unless the queue is full.
func (c *Conn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	c.mu.Lock()
	for !c.closed && c.queued != nil && !c.queued.fits(len(b), len(oob)) {
		c.room.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		<-c.done // what was queued first goes first
		return c.UDPConn.WriteMsgUDP(b, oob, addr)
	}
	if len(b) < directBelow && c.queued == nil && !c.sending {
		// Nothing to overtake, and nothing to gain from a run: an ACK
		// between bursts goes out without waking the sender.
		c.mu.Unlock()
		return c.UDPConn.WriteMsgUDP(b, oob, addr)
	}
	if c.queued == nil {
		c.queued = batches.Get().(*batch)
		if !c.sending {
			c.wake.Signal()
		}
	}
	c.queued.add(b, oob, addr.AddrPort())
	c.mu.Unlock()
	return len(b), len(oob), nil
}

// WriteTo queues p as WriteMsgUDP does, so that it keeps its place among
// the queued packets to the same address.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(p, addr)
	}
	n, _, err := c.WriteMsgUDP(p, nil, ua)
	return n, err
}

// send is the sender: it takes the queue whole, sends it, and waits for
// more, until Close.
func (c *Conn) send() {
	defer close(c.done)
	c.mu.Lock()
	for {
		for c.queued == nil && !c.closed {
			c.wake.Wait()
		}
		if c.queued == nil { // closed, and all sent
			c.mu.Unlock()
			return
		}
		b := c.queued
		c.queued, c.sending = nil, true
		c.room.Broadcast()
		c.mu.Unlock()

		c.sendBatch(b)
		b.reset()
		batches.Put(b)

		c.mu.Lock()
		c.sending = false
	}
}

// sendBatch sends a batch's packets in runs: for each address in the
// order it first appears, its packets in the order written.
func (c *Conn) sendBatch(b *batch) {
	for i := range b.pkts {
		if b.pkts[i].sent {
			continue
		}
		run := b.collect(i, c.gso.Load())
		if len(run.segs) == 1 {
			p := &b.pkts[i]
			c.write(b, p)
			continue
		}
		c.writeRun(b, run)
	}
}

// writeRun sends the packets of run in one UDP_SEGMENT send. Unless the
// packets are adjacent in the batch, they are first copied together.
func (c *Conn) writeRun(b *batch, run *run) {
	first := &b.pkts[run.segs[0]]
	data := b.data[first.off:run.end]
	if run.scattered {
		if b.scratch == nil {
			b.scratch = make([]byte, 0, maxRun)
		}
		data = b.scratch[:0]
		for _, i := range run.segs {
			p := &b.pkts[i]
			data = append(data, b.data[p.off:p.off+p.n]...)
		}
		b.scratch = data[:0]
	}
	oob := appendCmsg(append(b.cmsg[:0], b.oob[first.oobOff:first.oobOff+first.oobN]...), first.n)
	b.cmsg = oob[:0]
	_, _, err := c.UDPConn.WriteMsgUDPAddrPort(data, oob, first.addr)
	if err == nil || !Refused(err) {
		return
	}
	c.gso.Store(false) // the device cannot segment: one packet per send from now
	for _, i := range run.segs {
		c.write(b, &b.pkts[i])
	}
}

// write sends one packet, or a run quic-go made, as written. A run the
// kernel refuses goes out as single packets.
func (c *Conn) write(b *batch, p *packet) {
	data, oob := b.data[p.off:p.off+p.n], b.oob[p.oobOff:p.oobOff+p.oobN]
	_, _, err := c.UDPConn.WriteMsgUDPAddrPort(data, oob, p.addr)
	if err == nil || !Refused(err) || p.seg == 0 {
		return
	}
	c.gso.Store(false)
	single, _ := appendOther(b.cmsg[:0], oob)
	for o := 0; o < len(data); o += p.seg {
		_, _, _ = c.UDPConn.WriteMsgUDPAddrPort(data[o:min(o+p.seg, len(data))], single, p.addr)
	}
}

// batch is a queue of packets, their bytes and control messages held in
// two buffers that are allocated once and reused.
type batch struct {
	data    []byte
	oob     []byte
	pkts    []packet
	run     run    // collect's working set
	scratch []byte // made when a run first needs it
	cmsg    []byte
}

// packet is one queued write.
type packet struct {
	off, n       int // data[off:off+n]
	oobOff, oobN int // oob[oobOff:oobOff+oobN]
	addr         netip.AddrPort
	seg          int  // the segment size of a run quic-go made; 0 for one packet
	sent         bool // in a run already
}

// run is packets to one address, sent in one call.
type run struct {
	segs      []int // indexes into pkts
	end       int   // where the last packet's bytes end in data
	scattered bool  // some other packet's bytes lie between two of them
}

func newBatch() *batch {
	return &batch{
		data: make([]byte, 0, batchBytes),
		oob:  make([]byte, 0, 8<<10),
		pkts: make([]packet, 0, batchPackets),
		run:  run{segs: make([]int, 0, maxSegments)},
		cmsg: make([]byte, 0, 256),
	}
}

func (b *batch) empty() bool { return len(b.pkts) == 0 }

// fits reports whether a write of n bytes with oobn of control messages
// fits. An empty batch takes any write.
func (b *batch) fits(n, oobn int) bool {
	return b.empty() || len(b.pkts) < cap(b.pkts) && len(b.data)+n <= cap(b.data) && len(b.oob)+oobn <= cap(b.oob)
}

// add queues a write. The control messages of a single packet are kept
// without UDP_SEGMENT, so that they compare equal to those of the packets it
// may share a run with.
func (b *batch) add(data, oob []byte, to netip.AddrPort) {
	off := len(b.oob)
	var seg int
	b.oob, seg = appendOther(b.oob, oob)
	if seg == 0 || len(data) <= seg {
		seg = 0
	} else {
		b.oob = append(b.oob[:off], oob...)
	}
	b.pkts = append(b.pkts, packet{off: len(b.data), n: len(data), oobOff: off, oobN: len(b.oob) - off, addr: to, seg: seg})
	b.data = append(b.data, data...)
}

func (b *batch) reset() {
	b.data, b.oob, b.pkts = b.data[:0], b.oob[:0], b.pkts[:0]
}

// collect marks the packet at i and those after it that can share its
// send as sent, and returns them: the same address and control messages,
// the size of the first (the last may be shorter), and room in one send.
// Packets to other addresses between them do not end the run; a packet to
// the same address that cannot join it does, so that the address's packets
// stay in order.
func (b *batch) collect(i int, gso bool) *run {
	r := &b.run
	first := &b.pkts[i]
	first.sent = true
	r.segs, r.end, r.scattered = append(r.segs[:0], i), first.off+first.n, false
	oob := b.oob[first.oobOff : first.oobOff+first.oobN]
	if !gso || first.seg > 0 {
		return r
	}
	seg, total := first.n, first.n
	for j := i + 1; j < len(b.pkts) && len(r.segs) < maxSegments; j++ {
		p := &b.pkts[j]
		if p.sent || p.addr != first.addr {
			continue
		}
		if p.n > seg || p.seg > 0 || total+p.n > maxRun || !bytes.Equal(b.oob[p.oobOff:p.oobOff+p.oobN], oob) {
			break
		}
		p.sent = true
		r.scattered = r.scattered || p.off != r.end
		r.segs, r.end, total = append(r.segs, j), p.off+p.n, total+p.n
		if p.n < seg { // a shorter packet ends a run
			break
		}
	}
	return r
}
