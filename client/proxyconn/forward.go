package proxyconn

import (
	"crypto/rand"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/masque/quicproxy"
)

// Forwarded mode (draft-ietf-masque-quic-proxy) on the client's side of a UDP
// tunnel: the QUIC connection inside the tunnel registers its connection IDs
// with the proxy in capsules on the tunnel's stream, and once the proxy has
// given a virtual connection ID (VCID) for one, its short-header packets skip
// the connection to the proxy and travel as plain UDP between the client's
// socket and the proxy's, rewritten and scrambled. Everything else (long
// headers, short packets, connection IDs not acknowledged yet) stays tunnelled,
// so the inner connection never waits on a registration.
//
// The transport that negotiated forwarded mode (client/h3) owns the socket of
// the connection to the proxy and gives it to EnableForwarding as a
// ForwardSocket; the UDPConn keeps the registrations, rewrites the packets and
// counts them.

// ForwardSocket is the socket of the client's connection to the proxy as a
// UDPConn in forwarded mode uses it. Its methods may be called concurrently.
type ForwardSocket interface {
	// WriteForwarded sends b, a forwarded packet ready for the wire, to the
	// proxy from the socket the connection to the proxy uses (the draft
	// sends forwarded packets on the same 4-tuple).
	WriteForwarded(b []byte) error
	// AddRoute makes the socket's reader hand each packet whose Destination
	// Connection ID is r.VCID to r.Deliver, from now on; false if the VCID
	// already routes elsewhere.
	AddRoute(r *ForwardRoute) bool
	// RemoveRoute undoes AddRoute(r); a route since replaced stays.
	RemoveRoute(r *ForwardRoute)
}

// Forwarding is forwarded mode as a transport negotiated it for one tunnel:
// the socket, and the scramble transforms of each direction (each side
// scrambles with the key it sent in its Proxy-QUIC-Forwarding header).
type Forwarding struct {
	Socket     ForwardSocket
	Scramble   *quicproxy.Scrambler // the client's key: for the packets it sends
	Unscramble *quicproxy.Scrambler // the proxy's key: for the packets it receives
}

// ForwardStats counts a tunnel's packets in forwarded mode.
type ForwardStats struct {
	Sent     uint64 // packets sent forwarded rather than tunnelled
	Received uint64 // forwarded packets received and queued for ReadFrom
	Dropped  uint64 // forwarded packets lost: too short to unscramble, or a write that failed
	// BadCapsules counts the proxy's connection ID capsules that were
	// malformed or made no sense (a VCID the client cannot use), ignored
	// or answered with a close rather than ending the tunnel.
	BadCapsules uint64
}

// The draft's limits as this client applies them.
const (
	// clientCIDLen is the length of the client CIDs the inner connection
	// uses: the draft asks for at least 8 unpredictable bytes, to avoid
	// conflicts at the proxy.
	clientCIDLen = 8
	// maxRegistrations bounds the client and the target CIDs registered per
	// tunnel, each. The generator has no hook for retired CIDs, so
	// registrations age out: the oldest is closed when a new one comes.
	// quic-go keeps at most 6 client CIDs active, and a client sends to one
	// target CID at a time.
	maxRegistrations = 16
	// scrambleSample is the length of the scramble transform's IV: a
	// packet shorter than the CID and these bytes cannot be scrambled.
	scrambleSample = 16
	// maxQUICv1CIDLen is QUIC v1's longest connection ID (RFC 9000 §17.2),
	// and so the longest VCID the connection to the proxy can carry.
	maxQUICv1CIDLen = 20
)

// forwarder is a UDPConn's forwarded-mode state. Its send and receive paths
// read the published tables without a lock; registrations change under mu.
type forwarder struct {
	u          *UDPConn
	sock       ForwardSocket
	scramble   *quicproxy.Scrambler
	unscramble *quicproxy.Scrambler
	wake       chan struct{} // one slot: capsules wait in out

	// armed is set once the inner QUIC transport generated a client CID:
	// only then is the tunnel known to carry QUIC, whose short headers
	// may be forwarded.
	armed atomic.Bool
	// targetCIDLen is the target's CID length, learned from the Source
	// Connection ID of its first long-header packet; -1 until then.
	targetCIDLen atomic.Int32
	// targets maps each target CID registered to its VCID, nil while
	// unacknowledged or after the proxy refused it, so that the send
	// path registers a CID once. Copied on write, under mu.
	targets atomic.Pointer[map[string][]byte]

	mu         sync.Mutex      // guards the fields below
	nextSeq    uint64          // the next registration's sequence number
	maxSeq     uint64          // the proxy's last MAX_CONNECTION_IDS; 1 at first
	clientRegs []*registration // oldest first
	targetRegs []*registration // oldest first
	waiting    []*registration // beyond maxSeq: targets first, then clients, each oldest first
	out        []byte          // capsules for writeCapsules
	stopped    bool            // writeCapsules has ended: queue nothing more

	sent, received, dropped, badCapsules atomic.Uint64
}

// registration is a client or target CID the client registers.
type registration struct {
	target bool
	cid    []byte
	vcid   []byte        // from the proxy's ACK; nil before, or if it gave none
	route  *ForwardRoute // a client CID's route, once its VCID is acknowledged
	sent   bool          // the REGISTER capsule is queued: it has a sequence number
}

// ForwardRoute is one client VCID of a tunnel in forwarded mode: the
// ForwardSocket's reader hands it the packets addressed to VCID.
type ForwardRoute struct {
	VCID []byte // the proxy's; do not modify
	cid  []byte // the client CID it stands for
	f    *forwarder
}

// Deliver takes a forwarded packet as it arrived on the socket (scrambled,
// VCID in its Destination Connection ID) and queues it for ReadFrom as the
// inner connection expects it: unscrambled, with the client CID back. b is
// copied. It never blocks; what cannot be unscrambled is dropped and
// counted.
func (r *ForwardRoute) Deliver(b []byte) { r.f.deliver(r, b) }

// EnableForwarding puts u in forwarded mode as f describes. The transport
// calls it once the proxy has accepted forwarded mode, before Start.
func (u *UDPConn) EnableForwarding(f Forwarding) {
	fw := &forwarder{
		u:          u,
		sock:       f.Socket,
		scramble:   f.Scramble,
		unscramble: f.Unscramble,
		wake:       make(chan struct{}, 1),
		maxSeq:     1, // the draft's initial maximum
	}
	fw.targetCIDLen.Store(-1)
	fw.targets.Store(&map[string][]byte{})
	u.fwd = fw
}

// Forwarding reports whether the proxy accepted forwarded mode for u.
func (u *UDPConn) Forwarding() bool { return u.fwd != nil }

// Forwarded returns u's forwarded-mode counters; zero without forwarded mode.
func (u *UDPConn) Forwarded() ForwardStats {
	f := u.fwd
	if f == nil {
		return ForwardStats{}
	}
	return ForwardStats{
		Sent:        f.sent.Load(),
		Received:    f.received.Load(),
		Dropped:     f.dropped.Load(),
		BadCapsules: f.badCapsules.Load(),
	}
}

// ConnectionIDGenerator returns the generator of the client CIDs for a QUIC
// transport over u (quic.Transport.ConnectionIDGenerator): each CID it makes
// is registered with the proxy before quic-go uses it. nil without forwarded
// mode. NewOriginTransport sets it.
func (u *UDPConn) ConnectionIDGenerator() quic.ConnectionIDGenerator {
	if u.fwd == nil {
		return nil
	}
	return clientCIDs{u.fwd}
}

// clientCIDs generates the inner connection's client CIDs and registers each.
type clientCIDs struct{ f *forwarder }

func (g clientCIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [clientCIDLen]byte
	rand.Read(b[:])
	g.f.armed.Store(true)
	g.f.register(&registration{cid: b[:]})
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (clientCIDs) ConnectionIDLen() int { return clientCIDLen }

// register adds r, a new client or target CID, and registers it with the
// proxy as soon as the sequence numbers allow; the oldest registration of
// its kind is closed beyond maxRegistrations. A target CID already listed
// (another packet registered it since the send path looked) is left alone.
func (f *forwarder) register(r *registration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	regs := &f.clientRegs
	if r.target {
		regs = &f.targetRegs
		if find(*regs, r.cid) >= 0 {
			return
		}
	}
	*regs = append(*regs, r)
	if len(*regs) > maxRegistrations {
		old := (*regs)[0]
		*regs = slices.Delete(*regs, 0, 1)
		f.closeLocked(old)
	}
	if f.nextSeq <= f.maxSeq {
		f.sendRegisterLocked(r)
	} else {
		f.waitLocked(r)
	}
	if r.target {
		f.publishTargetsLocked()
	}
}

// waitLocked queues r for a sequence number: target CIDs first, since
// until one is acknowledged nothing the client sends is forwarded.
func (f *forwarder) waitLocked(r *registration) {
	i := len(f.waiting)
	if r.target {
		i = 0
		for i < len(f.waiting) && f.waiting[i].target {
			i++
		}
	}
	f.waiting = slices.Insert(f.waiting, i, r)
}

func (f *forwarder) sendRegisterLocked(r *registration) {
	r.sent = true
	f.nextSeq++
	c := quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: r.cid}
	if r.target {
		c.Type = quicproxy.TypeRegisterTargetCID // no reset token: none is shared
	}
	f.queueLocked(&c)
}

// closeLocked ends r, which has left its list: the proxy is told if it was
// registered, and a client CID's route goes.
func (f *forwarder) closeLocked(r *registration) {
	if !r.sent {
		f.waiting = slices.DeleteFunc(f.waiting, func(w *registration) bool { return w == r })
		return
	}
	c := quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: r.cid}
	if r.target {
		c.Type = quicproxy.TypeCloseTargetCID
	}
	f.queueLocked(&c)
	f.unrouteLocked(r)
}

func (f *forwarder) unrouteLocked(r *registration) {
	if r.route != nil {
		f.sock.RemoveRoute(r.route)
		r.route = nil
	}
}

// publishTargetsLocked publishes the target CIDs for the send path.
func (f *forwarder) publishTargetsLocked() {
	m := make(map[string][]byte, len(f.targetRegs))
	for _, r := range f.targetRegs {
		m[string(r.cid)] = r.vcid
	}
	f.targets.Store(&m)
}

// queueLocked queues c for writeCapsules and wakes it.
func (f *forwarder) queueLocked(c *quicproxy.Capsule) {
	if f.stopped {
		return
	}
	f.out = c.Append(f.out)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// writeCapsules writes the queued capsules to the stream until the tunnel
// ends: the one writer of capsules, so that registrations made on quic-go's
// goroutines (GenerateConnectionID, WriteTo) never wait on the stream.
func (f *forwarder) writeCapsules() {
	defer f.u.pump.Done()
	var buf []byte
	for {
		select {
		case <-f.wake:
		case <-f.u.tunnelDone.Done():
			return
		}
		f.mu.Lock()
		buf, f.out = f.out, buf[:0]
		f.mu.Unlock()
		f.u.writeMu.Lock()
		_, err := f.u.stream.Write(buf)
		f.u.writeMu.Unlock()
		if err != nil { // the stream has ended: its reader ends the tunnel
			f.mu.Lock()
			f.stopped = true
			f.mu.Unlock()
			return
		}
	}
}

// handleCapsule takes one of the proxy's connection ID capsules (value is
// valid only during the call). A malformed one, or one a proxy must not
// send, is counted and ignored: a bad capsule never ends the tunnel.
func (f *forwarder) handleCapsule(typ uint64, value []byte) error {
	c, err := quicproxy.Parse(typ, value)
	if err != nil {
		f.badCapsules.Add(1)
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Type {
	case quicproxy.TypeAckClientCID:
		f.ackClientLocked(c.CID, c.VCID)
	case quicproxy.TypeAckTargetCID:
		f.ackTargetLocked(c.CID, c.VCID)
	case quicproxy.TypeCloseClientCID:
		if i := find(f.clientRegs, c.CID); i >= 0 {
			f.unrouteLocked(f.clientRegs[i])
			f.clientRegs = slices.Delete(f.clientRegs, i, i+1)
		}
	case quicproxy.TypeCloseTargetCID:
		// Refused or removed: the CID stays listed, without a VCID, so
		// that the send path does not register it again.
		if i := find(f.targetRegs, c.CID); i >= 0 {
			f.targetRegs[i].vcid = nil
			f.publishTargetsLocked()
		}
	case quicproxy.TypeMaxConnectionIDs:
		f.maxSeq = max(f.maxSeq, c.MaxSeq)
		for len(f.waiting) > 0 && f.nextSeq <= f.maxSeq {
			r := f.waiting[0]
			f.waiting = slices.Delete(f.waiting, 0, 1)
			f.sendRegisterLocked(r)
		}
	default: // REGISTER_* and ACK_CLIENT_VCID are the client's to send
		f.badCapsules.Add(1)
	}
	return nil
}

// ackClientLocked takes the proxy's VCID for a client CID: packets for it
// are routed from the socket before the client says it is ready
// (ACK_CLIENT_VCID), as the proxy may forward from then on. A VCID shorter
// than the CID (the draft forbids it), longer than QUIC v1 allows, or with
// the top bit clear, which would make it look like one of the connection to
// the proxy's own CIDs, is refused with CLOSE_CLIENT_CID.
func (f *forwarder) ackClientLocked(cid, vcid []byte) {
	i := find(f.clientRegs, cid)
	if i < 0 || len(vcid) == 0 { // closed since, or no forwarding for it
		return
	}
	r := f.clientRegs[i]
	if r.route != nil && string(r.route.VCID) == string(vcid) {
		return // a repeated ACK
	}
	f.unrouteLocked(r) // a new VCID replaces the old one
	route := &ForwardRoute{VCID: slices.Clone(vcid), cid: r.cid, f: f}
	if len(vcid) < len(cid) || len(vcid) > maxQUICv1CIDLen || vcid[0]&0x80 == 0 || !f.sock.AddRoute(route) {
		f.badCapsules.Add(1)
		f.clientRegs = slices.Delete(f.clientRegs, i, i+1)
		f.queueLocked(&quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: r.cid})
		return
	}
	r.route = route
	f.queueLocked(&quicproxy.Capsule{Type: quicproxy.TypeAckClientVCID, CID: r.cid, VCID: route.VCID})
}

// ackTargetLocked takes the proxy's VCID for a target CID: from now on the
// send path forwards packets to it. A VCID longer than QUIC v1 allows
// cannot be sent and leaves the CID tunnelled.
func (f *forwarder) ackTargetLocked(cid, vcid []byte) {
	i := find(f.targetRegs, cid)
	if i < 0 || len(vcid) == 0 {
		return
	}
	if len(vcid) > maxQUICv1CIDLen {
		f.badCapsules.Add(1)
		return
	}
	f.targetRegs[i].vcid = slices.Clone(vcid)
	f.publishTargetsLocked()
}

func find(regs []*registration, cid []byte) int {
	return slices.IndexFunc(regs, func(r *registration) bool { return string(r.cid) == string(cid) })
}

// sawPacket learns the target's CID length from the first long-header
// packet received from it (RFC 8999 §5.1: its Source Connection ID), so that
// the send path knows where a short header's Destination Connection ID
// ends. Version Negotiation packets (version 0) echo the client's IDs and
// are passed over.
func (f *forwarder) sawPacket(p []byte) {
	if f.targetCIDLen.Load() >= 0 || len(p) < 7 || p[0]&0x80 == 0 {
		return
	}
	if p[1]|p[2]|p[3]|p[4] == 0 {
		return
	}
	dcidLen := int(p[5])
	if len(p) < 7+dcidLen {
		return
	}
	scidLen := int(p[6+dcidLen])
	if scidLen > maxQUICv1CIDLen || len(p) < 7+dcidLen+scidLen {
		return
	}
	f.targetCIDLen.CompareAndSwap(-1, int32(scidLen))
}

// forward sends p, a packet of the inner connection, forwarded if it can go
// so, and reports whether it took p. A short header whose Destination
// Connection ID is a target CID the proxy acknowledged goes forwarded; a
// target CID never seen is registered, and p tunnelled meanwhile. A failed
// write is a drop, as on a network.
func (f *forwarder) forward(p []byte) bool {
	if !f.armed.Load() || len(p) == 0 || p[0]&0x80 != 0 {
		return false
	}
	l := int(f.targetCIDLen.Load())
	if l <= 0 || len(p) < 1+l {
		return false // a zero-length target CID conflicts with every other: never registered
	}
	vcid, known := (*f.targets.Load())[string(p[1:1+l])]
	if !known {
		f.register(&registration{target: true, cid: slices.Clone(p[1 : 1+l])})
		return false
	}
	if vcid == nil || len(p) < 1+l+scrambleSample {
		return false
	}
	b := GetPacket(len(p) - l + len(vcid))
	defer PutPacket(b)
	pkt := *b
	pkt[0] = p[0]
	copy(pkt[1:], vcid)
	copy(pkt[1+len(vcid):], p[1+l:])
	if f.scramble.Scramble(pkt, len(vcid)) != nil || f.sock.WriteForwarded(pkt) != nil {
		f.dropped.Add(1)
		return true
	}
	f.sent.Add(1)
	return true
}

// deliver queues a forwarded packet for r's client CID: a copy, unscrambled,
// with the VCID replaced. The VCID is never shorter than the CID
// (ackClientLocked), so the packet shrinks in place.
func (f *forwarder) deliver(r *ForwardRoute, b []byte) {
	lv, lc := len(r.VCID), len(r.cid)
	if len(b) < 1+lv+scrambleSample {
		f.dropped.Add(1)
		return
	}
	buf := GetPacket(len(b))
	copy(*buf, b)
	if f.unscramble.Unscramble(*buf, lv) != nil {
		PutPacket(buf)
		f.dropped.Add(1)
		return
	}
	pkt := (*buf)[lv-lc:]
	pkt[0] = (*buf)[0]
	copy(pkt[1:], r.cid)
	f.received.Add(1)
	if !f.u.enqueue(packet{b: pkt, buf: buf}) {
		PutPacket(buf)
	}
}

// close removes u's routes from the socket: the tunnel has ended.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.clientRegs {
		f.unrouteLocked(r)
	}
	f.stopped = true
}
