package tunnel

import (
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/masqued/masqued/internal/udpgso"
	"github.com/masqued/masqued/masque/quicproxy"
)

// Forwarded mode (draft-ietf-masque-quic-proxy) lets a client that proxies
// a QUIC connection through a UDP tunnel send that connection's short-header
// packets as plain UDP on the 4-tuple of its connection to the proxy,
// outside the outer connection's encryption: the proxy swaps a virtual
// connection ID (VCID) for the real one, re-encrypts the packet with the
// scramble transform, and relays it. It saves the outer connection's
// per-packet cost (a DATAGRAM frame, its encryption and its ACKs) on both
// links, which is where a CONNECT-UDP proxy spends its CPU.
//
// Packets of the outer connections and forwarded packets share one UDP
// socket, the ForwardSocket, which quic-go reads through. quic-go v0.65.0 has
// no hook for packets it does not own, but it reads a socket that has a
// ReadBatch method through that method: the split happens there, before
// quic-go sees a packet, and quic-go keeps its batched reads (recvmmsg) and
// its writes, gathered into GSO runs by a udpgso.Conn. masqued offers
// forwarded mode on a listener of its own (-forward-listen), so that a
// client that cannot use it never pays for the split.
//
// Which packet is whose is told by one bit: every VCID the proxy hands out
// has the top bit of its first byte set, and the QUIC connections served on
// the socket must use connection IDs with that bit clear (VCIDTagged). A
// tagged short-header packet that matches no VCID is dropped and counted;
// it never reaches quic-go, which would answer it with a stateless reset.

// targetVCIDLen is the length of every target VCID: the longest connection
// ID QUIC v1 allows, so that replacing the VCID with the target's own
// connection ID only ever shortens a packet, in place, whatever length the
// target chose.
const targetVCIDLen = 20

// minScrambled is how many bytes the scramble transform needs after the
// connection ID (its IV).
const minScrambled = 16

// maxRegistrations bounds the connection IDs one tunnel may have
// registered at once, of each kind (client and target).
const maxRegistrations = 16

// VCIDTagged reports whether a connection ID's first byte marks it as one
// of the proxy's VCIDs. Connection IDs of QUIC connections served on a
// ForwardSocket must not be tagged.
func VCIDTagged(b0 byte) bool { return b0&0x80 != 0 }

// Drop reasons of forwarded packets (masqued_forwarded_dropped_total).
const (
	FwdDropUnknownVCID = "unknown_vcid" // tagged, but no tunnel has it
	FwdDropWrongPath   = "wrong_path"   // from an address that is not the tunnel's client
	FwdDropMalformed   = "malformed"    // too short to hold a VCID and the scramble IV
	FwdDropWriteError  = "write_error"  // the socket refused it
)

var fwdDropReasons = []string{FwdDropUnknownVCID, FwdDropWrongPath, FwdDropMalformed, FwdDropWriteError}

// ForwardSocket is the UDP socket of a listener that offers forwarded
// mode: quic-go serves the outer connections on it (it is a
// quic.OOBCapablePacketConn with ReadBatch), and forwarded packets from
// clients are taken out of its reads and sent to their targets. It is safe
// for concurrent use, as net.PacketConn is.
type ForwardSocket struct {
	uc      *net.UDPConn
	out     *udpgso.Conn // quic-go's writes, gathered into runs
	in      *batchReader // quic-go's reads, in batches
	run     upRun        // ReadBatch's forwarded packets, gathered per tunnel
	metrics *Metrics
	gso     atomic.Bool // the kernel took a UDP_SEGMENT send

	mu     sync.RWMutex
	routes map[[targetVCIDLen]byte]*targetRoute
}

// targetRoute is where packets to one target VCID go.
type targetRoute struct {
	fw  *Forwarding
	cid []byte // the target's connection ID
}

// NewForwardSocket wraps uc, which it owns from then on: Close closes it.
// metrics may be nil.
func NewForwardSocket(uc *net.UDPConn, metrics *Metrics) *ForwardSocket {
	s := &ForwardSocket{uc: uc, out: udpgso.NewConn(uc), in: newBatchReader(uc), metrics: metrics, routes: make(map[[targetVCIDLen]byte]*targetRoute)}
	s.gso.Store(udpgso.Supported(uc))
	_ = uc.SetReadBuffer(4 << 20)
	_ = uc.SetWriteBuffer(4 << 20)
	return s
}

// ReadBatch reads as ipv4.PacketConn.ReadBatch does (flags must be 0),
// the messages of forwarded packets left out: those go to their targets.
// It returns when it has read at least one packet that is not forwarded.
func (s *ForwardSocket) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	for {
		n, err := s.in.read(ms)
		if err != nil {
			return 0, err
		}
		kept := 0
		for i := range ms[:n] {
			m := &ms[i]
			if s.forwarded(m.Buffers[0][:m.N], s.in.source(ms, i), &s.run) {
				continue
			}
			addr := s.in.addr(ms, i)
			if kept != i { // quic-go's buffers stay with their messages: copy
				k := &ms[kept]
				k.N = copy(k.Buffers[0], m.Buffers[0][:m.N])
				k.NN = copy(k.OOB, m.OOB[:m.NN])
				k.Flags = m.Flags
			}
			ms[kept].Addr = addr
			kept++
		}
		s.run.flush()
		if kept > 0 {
			return kept, nil
		}
	}
}

// ReadMsgUDP returns the next packet that is not a forwarded one; forwarded
// packets it reads meanwhile go to their targets.
func (s *ForwardSocket) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	for {
		n, oobn, flags, from, err := s.uc.ReadMsgUDPAddrPort(b, oob)
		if err != nil {
			return n, oobn, flags, nil, err
		}
		if !s.forwarded(b[:n], from, nil) {
			return n, oobn, flags, net.UDPAddrFromAddrPort(from), nil
		}
	}
}

// ReadFrom is ReadMsgUDP without control messages.
func (s *ForwardSocket) ReadFrom(p []byte) (int, net.Addr, error) {
	n, _, _, addr, err := s.ReadMsgUDP(p, nil)
	if err != nil {
		return n, nil, err
	}
	return n, addr, nil
}

// forwarded reports whether p, read from from, is a forwarded packet (a
// short header whose first connection ID byte is tagged), and if so sends
// it on to its target, or adds it to run to be sent with others (run may be
// nil), or drops and counts it.
func (s *ForwardSocket) forwarded(p []byte, from netip.AddrPort, run *upRun) bool {
	if len(p) < 2 || p[0]&0x80 != 0 || !VCIDTagged(p[1]) {
		return false
	}
	fw, pkt := s.forwardUp(p, from)
	switch {
	case fw == nil: // dropped
	case run == nil || !s.gso.Load():
		fw.up(pkt)
	default:
		run.add(fw, pkt)
	}
	return true
}

// forwardUp turns a forwarded packet from a client back into the packet
// for its target, in place, and returns it with its tunnel; or it drops and
// counts the packet and returns nil.
func (s *ForwardSocket) forwardUp(pkt []byte, from netip.AddrPort) (*Forwarding, []byte) {
	if len(pkt) < 1+targetVCIDLen+minScrambled {
		s.metrics.forwardDrop(FwdDropMalformed)
		return nil, nil
	}
	s.mu.RLock()
	r := s.routes[[targetVCIDLen]byte(pkt[1:1+targetVCIDLen])]
	s.mu.RUnlock()
	if r == nil {
		s.metrics.forwardDrop(FwdDropUnknownVCID)
		return nil, nil
	}
	if !r.fw.fromClient(from) {
		s.metrics.forwardDrop(FwdDropWrongPath)
		return nil, nil
	}
	if err := r.fw.in.Unscramble(pkt, targetVCIDLen); err != nil {
		s.metrics.forwardDrop(FwdDropMalformed)
		return nil, nil
	}
	// The VCID is at least as long as the target's connection ID: the
	// packet starts later by the difference, and the rest stays where it is.
	start := targetVCIDLen - len(r.cid)
	pkt[start] = pkt[0]
	copy(pkt[start+1:], r.cid)
	return r.fw, pkt[start:]
}

// upRun gathers the forwarded packets of one ReadBatch that go to one
// tunnel, one after another and of equal size (the last may be shorter),
// for one UDP_SEGMENT write to the target: an upload's packets arrive so.
// They are copied together, as each lies in a buffer of quic-go's. Only
// ReadBatch, on quic-go's reader goroutine, uses it.
type upRun struct {
	fw     *Forwarding
	buf    []byte // the packets; made on first use, kept
	seg    int    // the first packet's size
	n      int    // packets in buf
	closed bool   // a shorter packet ended the run
}

// upRunBytes is an upRun's room: a batch of quic-go's reads (8 packets) and
// more.
const upRunBytes = 64 << 10

// add adds pkt, bound for fw's target, sending the run so far first where
// pkt cannot join it.
func (r *upRun) add(fw *Forwarding, pkt []byte) {
	if r.n > 0 && (fw != r.fw || r.closed || len(pkt) > r.seg || len(r.buf)+len(pkt) > cap(r.buf)) {
		r.flush()
	}
	if r.buf == nil {
		r.buf = make([]byte, 0, upRunBytes)
	}
	if r.n == 0 {
		r.fw, r.seg = fw, len(pkt)
	}
	r.buf = append(r.buf, pkt...)
	r.n++
	r.closed = len(pkt) < r.seg
}

// flush sends the run, if any, and empties it.
func (r *upRun) flush() {
	switch {
	case r.n == 1:
		r.fw.up(r.buf)
	case r.n > 1:
		r.fw.upRun(r.buf, r.seg, r.n)
	}
	r.fw, r.buf, r.n, r.closed = nil, r.buf[:0], 0, false
}

// WriteMsgUDP queues quic-go's packets, to be sent in runs.
func (s *ForwardSocket) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	return s.out.WriteMsgUDP(b, oob, addr)
}

// WriteTo: see WriteMsgUDP.
func (s *ForwardSocket) WriteTo(p []byte, addr net.Addr) (int, error) { return s.out.WriteTo(p, addr) }

// SyscallConn lets quic-go set its socket options (ECN, Don't Fragment).
func (s *ForwardSocket) SyscallConn() (syscall.RawConn, error) { return s.uc.SyscallConn() }

// Close sends what quic-go queued and closes the socket.
func (s *ForwardSocket) Close() error {
	s.out.Close()
	return s.uc.Close()
}

// LocalAddr returns the socket's address.
func (s *ForwardSocket) LocalAddr() net.Addr { return s.uc.LocalAddr() }

// SetDeadline and the two below pass quic-go's deadlines to the socket.
func (s *ForwardSocket) SetDeadline(t time.Time) error { return s.uc.SetDeadline(t) }

// SetReadDeadline: see SetDeadline.
func (s *ForwardSocket) SetReadDeadline(t time.Time) error { return s.uc.SetReadDeadline(t) }

// SetWriteDeadline: see SetDeadline.
func (s *ForwardSocket) SetWriteDeadline(t time.Time) error { return s.uc.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer take quic-go's socket-buffer tuning.
func (s *ForwardSocket) SetReadBuffer(n int) error { return s.uc.SetReadBuffer(n) }

// SetWriteBuffer: see SetReadBuffer.
func (s *ForwardSocket) SetWriteBuffer(n int) error { return s.uc.SetWriteBuffer(n) }

// newTargetVCID registers a fresh target VCID for r and returns it.
func (s *ForwardSocket) newTargetVCID(r *targetRoute) ([]byte, error) {
	var key [targetVCIDLen]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if _, err := rand.Read(key[:]); err != nil {
			return nil, err
		}
		key[0] |= 0x80
		if s.routes[key] == nil {
			s.routes[key] = r
			return append([]byte(nil), key[:]...), nil
		}
	}
}

func (s *ForwardSocket) removeRoute(vcid []byte) {
	s.mu.Lock()
	delete(s.routes, [targetVCIDLen]byte(vcid))
	s.mu.Unlock()
}

// PeerConn is what a Forwarding needs of the client's connection: its
// current address, which changes when the client migrates.
type PeerConn interface{ RemoteAddr() net.Addr }

// Forwarding is one tunnel's forwarded mode, negotiated by
// ForwardSocket.Negotiate and handed to Tunnel.UseForwarding before Relay.
// Its state is bounded: maxRegistrations connection IDs of each kind.
type Forwarding struct {
	sock *ForwardSocket
	peer PeerConn
	in   *quicproxy.Scrambler // the client's key: packets from the client
	out  *quicproxy.Scrambler // ours: packets to the client

	// relay is the tunnel's relay while it runs, nil before and after.
	relay atomic.Pointer[udpRelay]
	// client is the last address the client was seen at, refreshed from
	// peer when a packet arrives from elsewhere and before each send.
	client atomic.Pointer[netip.AddrPort]
	// acked is the snapshot of client connection IDs whose VCIDs the
	// client has acknowledged, read per packet without a lock.
	acked atomic.Pointer[[]clientReg]

	// The registrations; the stream's capsule loop is their one writer.
	mu      sync.Mutex
	nextSeq uint64 // the sequence number of the next registration
	maxSeq  uint64 // the highest one the client may use (MAX_CONNECTION_IDS)
	targets []targetReg
	clients []clientReg
}

type targetReg struct{ cid, vcid []byte }

type clientReg struct {
	cid, vcid []byte
	acked     bool
}

// Negotiate answers a CONNECT-UDP request's Proxy-QUIC-Forwarding header
// (request, "" if absent): the value for the response's header and the
// tunnel's Forwarding, or "" and nil where the client did not ask for it
// or offered no transform masqued uses. Only the scramble transform is
// accepted: the identity transform would let anyone who sees both links
// match the packets.
func (s *ForwardSocket) Negotiate(request string, peer PeerConn) (string, *Forwarding) {
	if request == "" {
		return "", nil
	}
	req, err := quicproxy.ParseForwarding(request)
	if err != nil || !req.Enabled || len(req.ScrambleKey) != 32 {
		return "", nil
	}
	offered := false
	for _, tr := range req.AcceptTransforms {
		offered = offered || tr == quicproxy.TransformScramble
	}
	if !offered {
		return "", nil
	}
	in, err := quicproxy.NewScrambler(req.ScrambleKey)
	if err != nil {
		return "", nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", nil
	}
	out, err := quicproxy.NewScrambler(key)
	if err != nil {
		return "", nil
	}
	fw := &Forwarding{sock: s, peer: peer, in: in, out: out, maxSeq: 1}
	fw.currentClient()
	resp := quicproxy.Forwarding{Enabled: true, Transform: quicproxy.TransformScramble, ScrambleKey: key}
	return resp.String(), fw
}

// currentClient reads the client's address from its connection and keeps
// it; false if the connection has none that UDP can reach.
func (fw *Forwarding) currentClient() (netip.AddrPort, bool) {
	ua, ok := fw.peer.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if cur := fw.client.Load(); cur == nil || *cur != ap {
		changed := ap // only on a change: it escapes to the heap
		fw.client.Store(&changed)
	}
	return ap, true
}

// fromClient reports whether from is the client's current address. A
// packet from elsewhere refreshes what the connection says: after a
// migration quic-go has the new, validated path, and packets from the old
// one are dropped.
func (fw *Forwarding) fromClient(from netip.AddrPort) bool {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if cur := fw.client.Load(); cur != nil && *cur == from {
		return true
	}
	cur, ok := fw.currentClient()
	return ok && cur == from
}

// up sends a client's forwarded packet, its connection ID restored, to the
// target.
func (fw *Forwarding) up(pkt []byte) {
	relay := fw.relay.Load()
	if relay == nil {
		fw.sock.metrics.forwardDrop(FwdDropUnknownVCID) // the tunnel has ended
		return
	}
	if _, err := relay.t.target.Write(pkt); err != nil {
		fw.sock.metrics.forwardDrop(FwdDropWriteError)
		return
	}
	fw.sentUp(relay, len(pkt))
}

// upRun sends n packets of seg bytes each (the last may be shorter), one
// after another in run, to the target: in one UDP_SEGMENT write where the
// kernel takes it. A failed write drops them all; a target that is no UDP
// socket takes one write each.
func (fw *Forwarding) upRun(run []byte, seg, n int) {
	relay := fw.relay.Load()
	if relay == nil {
		for range n {
			fw.sock.metrics.forwardDrop(FwdDropUnknownVCID)
		}
		return
	}
	uc, ok := relay.t.target.(*net.UDPConn)
	if !ok {
		for o := 0; o < len(run); o += seg {
			fw.up(run[o:min(o+seg, len(run))])
		}
		return
	}
	if err := udpgso.SendRun(uc, run, seg, netip.AddrPort{}, &fw.sock.gso); err != nil { // the socket is connected
		for range n {
			fw.sock.metrics.forwardDrop(FwdDropWriteError)
		}
		return
	}
	for o := 0; o < len(run); o += seg {
		fw.sentUp(relay, min(seg, len(run)-o))
	}
}

// sentUp counts a packet of n bytes forwarded to the target.
func (fw *Forwarding) sentUp(relay *udpRelay, n int) {
	relay.seen.touch()
	relay.t.datagramUp(n)
	fw.sock.metrics.forwarded(true)
}

// rewriteDown turns a target's packet into a forwarded one in place, if it
// is a short-header packet to a client connection ID whose VCID the client
// has acknowledged: the VCID (of the same length) replaces the connection
// ID, and the packet is scrambled with our key. It reports whether it did.
func (fw *Forwarding) rewriteDown(pkt []byte) bool {
	acked := fw.acked.Load()
	if acked == nil || len(pkt) == 0 || pkt[0]&0x80 != 0 {
		return false
	}
	for _, r := range *acked {
		n := len(r.cid)
		if len(pkt) >= 1+n+minScrambled && string(pkt[1:1+n]) == string(r.cid) {
			copy(pkt[1:], r.vcid)
			return fw.out.Scramble(pkt, n) == nil
		}
	}
	return false
}

// sendDown sends a run of forwarded packets, seg bytes each but the last,
// to the client's current address: in one UDP_SEGMENT send where the kernel
// has it, else one send each.
func (fw *Forwarding) sendDown(run []byte, seg int) error {
	to, ok := fw.currentClient()
	if !ok {
		return nil
	}
	if err := udpgso.SendRun(fw.sock.uc, run, seg, to, &fw.sock.gso); err != nil {
		fw.sock.metrics.forwardDrop(FwdDropWriteError)
	}
	return nil
}
