package proxyconn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/quicproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSocket is a ForwardSocket on a real loopback UDP socket, as client/h3's
// is, without its reader: a test hands packets to the routes itself.
type testSocket struct {
	udp   *net.UDPConn
	proxy netip.AddrPort
	mu    sync.Mutex
	route map[string]*ForwardRoute // guarded by mu
}

func (s *testSocket) WriteForwarded(b []byte) error {
	_, err := s.udp.WriteToUDPAddrPort(b, s.proxy)
	return err
}

func (s *testSocket) AddRoute(r *ForwardRoute) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.route[string(r.VCID)] != nil {
		return false
	}
	s.route[string(r.VCID)] = r
	return true
}

func (s *testSocket) RemoveRoute(r *ForwardRoute) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.route[string(r.VCID)] == r {
		delete(s.route, string(r.VCID))
	}
}

func (s *testSocket) routeOf(vcid []byte) *ForwardRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.route[string(vcid)]
}

// fwdPeer is the proxy's end of a forwarding tunnel's stream, on a loopback
// TCP connection: it reads the client's capsules and writes its own.
type fwdPeer struct {
	conn   net.Conn
	events chan peerEvent
}

// peerEvent is a capsule the peer read: a DATAGRAM's UDP payload, or a
// connection ID capsule.
type peerEvent struct {
	datagram []byte // nil for a connection ID capsule
	capsule  quicproxy.Capsule
}

// fwdTunnel is a UDPConn in forwarded mode with what a test needs around it.
type fwdTunnel struct {
	u         *UDPConn
	peer      *fwdPeer
	sock      *testSocket
	proxyUDP  *net.UDPConn         // the proxy's socket, where forwarded packets arrive
	fromProxy *quicproxy.Scrambler // the proxy's key: scrambles what it forwards
	ofClient  *quicproxy.Scrambler // the client's key: unscrambles what it forwards
}

func newScrambler(t *testing.T) (*quicproxy.Scrambler, *quicproxy.Scrambler) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	a, err := quicproxy.NewScrambler(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := quicproxy.NewScrambler(key)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// forwardTunnel returns a started UDPConn in forwarded mode whose stream is a
// loopback TCP connection to a fwdPeer, closed at cleanup.
func forwardTunnel(t *testing.T) *fwdTunnel {
	t.Helper()
	ln := testnet.TCP(t, "127.0.0.1")
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	proxyUDP, clientUDP := testnet.UDP(t, "127.0.0.1"), testnet.UDP(t, "127.0.0.1")
	ft := &fwdTunnel{
		peer:     &fwdPeer{conn: sc, events: make(chan peerEvent, 256)},
		sock:     &testSocket{udp: clientUDP, proxy: proxyUDP.LocalAddr().(*net.UDPAddr).AddrPort(), route: map[string]*ForwardRoute{}},
		proxyUDP: proxyUDP,
	}
	clientScramble, ofClient := newScrambler(t)
	fromProxy, clientUnscramble := newScrambler(t)
	ft.fromProxy, ft.ofClient = fromProxy, ofClient
	ft.u = NewUDPConn(tcpStream{c}, nil, c.LocalAddr(), AddrOf("192.0.2.1:443", "udp"))
	ft.u.EnableForwarding(Forwarding{Socket: ft.sock, Scramble: clientScramble, Unscramble: clientUnscramble})
	ft.u.Start()
	if err := ft.u.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); ft.peer.read() }()
	t.Cleanup(func() {
		ft.u.Close()
		sc.Close()
		<-done
	})
	return ft
}

// read turns the client's capsules into events until the stream ends.
func (p *fwdPeer) read() {
	defer close(p.events)
	cr := capsule.NewReader(bufio.NewReader(p.conn))
	cr.HandleOther(quicproxy.IsCapsuleType, func(typ uint64, value []byte) error {
		c, err := quicproxy.Parse(typ, slices.Clone(value))
		if err != nil {
			return err
		}
		p.events <- peerEvent{capsule: c}
		return nil
	})
	buf := make([]byte, 65536)
	for {
		n, err := cr.ReadDatagram(buf)
		if err != nil {
			return
		}
		payload, err := capsule.SplitContext(buf[:n])
		if err != nil {
			return
		}
		p.events <- peerEvent{datagram: slices.Clone(payload)}
	}
}

// next returns the client's next capsule.
func (p *fwdPeer) next(t *testing.T) peerEvent {
	t.Helper()
	select {
	case e, ok := <-p.events:
		if !ok {
			t.Fatal("the client ended the stream")
		}
		return e
	case <-time.After(time.Minute): // a hang bound: on loopback it takes well under a millisecond
		t.Fatal("no capsule from the client")
	}
	return peerEvent{}
}

// expect returns the client's next capsule, which must be of type typ.
func (p *fwdPeer) expect(t *testing.T, typ uint64) quicproxy.Capsule {
	t.Helper()
	e := p.next(t)
	if e.datagram != nil || e.capsule.Type != typ {
		t.Fatalf("the client sent %+v, want a capsule of type %#x", e, typ)
	}
	return e.capsule
}

// expectDatagram returns the client's next capsule, which must be a DATAGRAM.
func (p *fwdPeer) expectDatagram(t *testing.T) []byte {
	t.Helper()
	e := p.next(t)
	if e.datagram == nil {
		t.Fatalf("the client sent a capsule of type %#x, want a DATAGRAM", e.capsule.Type)
	}
	return e.datagram
}

func (p *fwdPeer) send(t *testing.T, c quicproxy.Capsule) {
	t.Helper()
	if _, err := p.conn.Write(c.Append(nil)); err != nil {
		t.Fatal(err)
	}
}

func (p *fwdPeer) sendDatagram(t *testing.T, payload []byte) {
	t.Helper()
	b := make([]byte, capsule.MaxHeaderLen+1+len(payload))
	b[capsule.MaxHeaderLen] = capsule.ContextUDP
	copy(b[capsule.MaxHeaderLen+1:], payload)
	if _, err := p.conn.Write(b[capsule.PutDatagramHeader(b, capsule.MaxHeaderLen):]); err != nil {
		t.Fatal(err)
	}
}

// sync returns once the client has handled every capsule sent before: the
// stream is read in order, so a datagram sent after them and read back
// marks the point.
func (ft *fwdTunnel) sync(t *testing.T) {
	t.Helper()
	ft.peer.sendDatagram(t, []byte("sync"))
	buf := make([]byte, 64)
	n, _, err := ft.u.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "sync" {
		t.Fatalf("ReadFrom = %q, %v; want the sync datagram", buf[:n], err)
	}
}

// vcid returns a random VCID of n bytes with the top bit set, as the proxy
// makes them.
func vcid(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] |= 0x80
	return b
}

func generate(t *testing.T, u *UDPConn, n int) [][]byte {
	t.Helper()
	gen := u.ConnectionIDGenerator()
	if gen == nil || gen.ConnectionIDLen() != clientCIDLen {
		t.Fatalf("generator %v, want one of %d-byte CIDs", gen, clientCIDLen)
	}
	var ids [][]byte
	for range n {
		id, err := gen.GenerateConnectionID()
		if err != nil || id.Len() != clientCIDLen {
			t.Fatalf("GenerateConnectionID = %v, %v", id, err)
		}
		ids = append(ids, id.Bytes())
	}
	return ids
}

// allowSeq raises the proxy's MAX_CONNECTION_IDS to maxSeq.
func (ft *fwdTunnel) allowSeq(t *testing.T, maxSeq uint64) {
	t.Helper()
	ft.peer.send(t, quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: maxSeq})
	ft.sync(t)
}

// clientCID generates a client CID and reads its registration.
func (ft *fwdTunnel) clientCID(t *testing.T) []byte {
	t.Helper()
	id := generate(t, ft.u, 1)[0]
	if c := ft.peer.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(c.CID, id) {
		t.Fatalf("registered %x, want %x", c.CID, id)
	}
	return id
}

// routeClient acknowledges cid with a new VCID of n bytes, reads the
// client's ACK_CLIENT_VCID and returns the VCID and its route.
func (ft *fwdTunnel) routeClient(t *testing.T, cid []byte, n int) ([]byte, *ForwardRoute) {
	t.Helper()
	v := vcid(n)
	ft.peer.send(t, quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid, VCID: v})
	a := ft.peer.expect(t, quicproxy.TypeAckClientVCID)
	if !bytes.Equal(a.CID, cid) || !bytes.Equal(a.VCID, v) || len(a.ResetToken) != 0 {
		t.Fatalf("ACK_CLIENT_VCID %+v, want CID %x, VCID %x, no token", a, cid, v)
	}
	r := ft.sock.routeOf(v)
	if r == nil {
		t.Fatal("the acknowledged VCID is not routed")
	}
	return v, r
}

// TestForwardClientCIDs: each client CID generated is registered, in
// order, within the proxy's MAX_CONNECTION_IDS (1 at first); an
// acknowledged VCID is routed and acknowledged back without a reset
// token; a VCID the client cannot tell from its own connection's CIDs, or
// shorter than the CID, is refused with CLOSE_CLIENT_CID; the proxy's
// CLOSE_CLIENT_CID removes the route.
func TestForwardClientCIDs(t *testing.T) {
	ft := forwardTunnel(t)
	p := ft.peer
	ids := generate(t, ft.u, 3)
	for _, id := range ids[:2] {
		if c := p.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(c.CID, id) {
			t.Fatalf("registered %x, want %x", c.CID, id)
		}
	}
	// The third registration (sequence number 2) waits for
	// MAX_CONNECTION_IDS: the ACK_CLIENT_VCID queued after it goes first.
	v0, _ := ft.routeClient(t, ids[0], 8)
	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 10})
	if c := p.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(c.CID, ids[2]) {
		t.Fatalf("registered %x after MAX_CONNECTION_IDS, want %x", c.CID, ids[2])
	}

	clear := vcid(8)
	clear[0] &^= 0x80
	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: ids[1], VCID: clear})
	if c := p.expect(t, quicproxy.TypeCloseClientCID); !bytes.Equal(c.CID, ids[1]) {
		t.Fatalf("closed %x, want %x (VCID with the top bit clear)", c.CID, ids[1])
	}
	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: ids[2], VCID: vcid(7)})
	if c := p.expect(t, quicproxy.TypeCloseClientCID); !bytes.Equal(c.CID, ids[2]) {
		t.Fatalf("closed %x, want %x (VCID shorter than the CID)", c.CID, ids[2])
	}
	if ft.sock.routeOf(clear) != nil {
		t.Error("a refused VCID is routed")
	}

	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: ids[0]})
	ft.sync(t)
	if ft.sock.routeOf(v0) != nil {
		t.Error("the proxy closed the CID, but its VCID is still routed")
	}
	if got := ft.u.Forwarded().BadCapsules; got != 2 {
		t.Errorf("BadCapsules = %d, want 2 (the two refused VCIDs)", got)
	}
}

// TestForwardBadCapsules: a malformed capsule, or one only a client sends,
// is counted and the tunnel lives on.
func TestForwardBadCapsules(t *testing.T) {
	ft := forwardTunnel(t)
	// MAX_CONNECTION_IDS of 0 is malformed; its value here is one varint.
	bad := quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 1}
	b := bad.Append(nil)
	b[len(b)-1] = 0
	if _, err := ft.peer.conn.Write(b); err != nil {
		t.Fatal(err)
	}
	ft.peer.send(t, quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: []byte("12345678")})
	ft.sync(t)
	if got := ft.u.Forwarded().BadCapsules; got != 2 {
		t.Errorf("BadCapsules = %d, want 2", got)
	}
}

// TestForwardRegistrationBound: past 16 client CIDs the oldest is closed
// and its route removed.
func TestForwardRegistrationBound(t *testing.T) {
	ft := forwardTunnel(t)
	p := ft.peer
	ft.allowSeq(t, 100)
	first := ft.clientCID(t)
	v, _ := ft.routeClient(t, first, 8)
	generate(t, ft.u, maxRegistrations-1)
	for range maxRegistrations - 1 {
		p.expect(t, quicproxy.TypeRegisterClientCID)
	}
	if ft.sock.routeOf(v) == nil {
		t.Fatal("16 registrations: the first should still be routed")
	}
	last := generate(t, ft.u, 1)[0]
	if c := p.expect(t, quicproxy.TypeCloseClientCID); !bytes.Equal(c.CID, first) {
		t.Fatalf("closed %x, want the oldest, %x", c.CID, first)
	}
	if c := p.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(c.CID, last) {
		t.Fatalf("registered %x, want %x", c.CID, last)
	}
	if ft.sock.routeOf(v) != nil {
		t.Error("the closed registration is still routed")
	}
}

// longHeader returns a QUIC v1 Initial-like long header from the target with
// Source Connection ID scid, padded to n bytes.
func longHeader(dcid, scid []byte, n int) []byte {
	b := []byte{0xc0, 0, 0, 0, 1, byte(len(dcid))}
	b = append(b, dcid...)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	return append(b, make([]byte, n-len(b))...)
}

// shortHeader returns a short-header packet to dcid of n bytes, random after
// the header as encrypted packets are.
func shortHeader(dcid []byte, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] = 0x40 | b[0]&0x3f
	copy(b[1:], dcid)
	return b
}

// readForwarded reads the next forwarded packet at the proxy's socket and
// unscrambles it with the client's key.
func (ft *fwdTunnel) readForwarded(t *testing.T, vcidLen int) []byte {
	t.Helper()
	if err := ft.proxyUDP.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := ft.proxyUDP.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if buf[0]&0x80 != 0 {
		t.Fatalf("a forwarded packet with the header form bit set: %x", buf[0])
	}
	if err := ft.ofClient.Unscramble(buf[:n], vcidLen); err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// withVCID returns pkt with its cidLen-byte DCID replaced by vcid.
func withVCID(pkt []byte, cidLen int, vcid []byte) []byte {
	return slices.Concat(pkt[:1], vcid, pkt[1+cidLen:])
}

// TestForwardSend: the target's CID length comes from its first long
// header; a short header to a new target CID goes tunnelled and registers
// it, once; after ACK_TARGET_CID it goes forwarded to the proxy's socket,
// VCID in place of the CID (a longer one: the packet grows) and scrambled
// with the client's key. Long headers and packets too short to scramble stay
// tunnelled; after CLOSE_TARGET_CID the CID is tunnelled and not registered
// again.
func TestForwardSend(t *testing.T) {
	ft := forwardTunnel(t)
	p := ft.peer
	ft.allowSeq(t, 3)
	client := ft.clientCID(t)
	target := vcid(8)
	target[0] &^= 0x80 // any bytes: the target chose it

	// Before the client knows the target's CID length nothing is forwarded
	// or registered.
	early := shortHeader(target, 100)
	if _, err := ft.u.WriteTo(early, nil); err != nil {
		t.Fatal(err)
	}
	if got := p.expectDatagram(t); !bytes.Equal(got, early) {
		t.Fatal("the early packet was not tunnelled as it was")
	}
	p.sendDatagram(t, longHeader(client, target, 1200))
	if n, _, err := ft.u.ReadFrom(make([]byte, 2048)); err != nil || n != 1200 {
		t.Fatalf("ReadFrom of the long header = %d, %v", n, err)
	}

	pkt := shortHeader(target, 1000)
	for range 2 {
		if _, err := ft.u.WriteTo(pkt, nil); err != nil {
			t.Fatal(err)
		}
	}
	var datagrams int
	var reg *quicproxy.Capsule
	for datagrams < 2 || reg == nil {
		e := p.next(t)
		switch {
		case e.datagram != nil:
			if !bytes.Equal(e.datagram, pkt) {
				t.Fatal("a tunnelled packet changed on the way")
			}
			datagrams++
		case e.capsule.Type == quicproxy.TypeRegisterTargetCID && reg == nil:
			reg = &e.capsule
		default:
			t.Fatalf("unexpected capsule %+v", e.capsule)
		}
	}
	if !bytes.Equal(reg.CID, target) || len(reg.ResetToken) != 0 {
		t.Fatalf("REGISTER_TARGET_CID %+v, want CID %x and no token", reg, target)
	}

	tv := vcid(16)
	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: target, VCID: tv})
	ft.sync(t)
	if _, err := ft.u.WriteTo(pkt, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := ft.readForwarded(t, len(tv)), withVCID(pkt, len(target), tv); !bytes.Equal(got, want) {
		t.Fatalf("forwarded\n%x\nwant\n%x", got, want)
	}
	if s := ft.u.Forwarded(); s.Sent != 1 || s.Dropped != 0 {
		t.Errorf("Forwarded() = %+v, want 1 sent", s)
	}

	short := shortHeader(target, 1+len(target)+15) // one byte short of a scramble sample
	long := longHeader(target, client, 1200)
	for _, q := range [][]byte{short, long} {
		if _, err := ft.u.WriteTo(q, nil); err != nil {
			t.Fatal(err)
		}
		if got := p.expectDatagram(t); !bytes.Equal(got, q) {
			t.Fatalf("a packet of %d bytes was not tunnelled as it was", len(q))
		}
	}

	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID, CID: target})
	ft.sync(t)
	if _, err := ft.u.WriteTo(pkt, nil); err != nil {
		t.Fatal(err)
	}
	generate(t, ft.u, 1) // a capsule queued after any registration WriteTo made
	if got := p.expectDatagram(t); !bytes.Equal(got, pkt) {
		t.Fatal("after CLOSE_TARGET_CID the packet was not tunnelled")
	}
	p.expect(t, quicproxy.TypeRegisterClientCID) // not a REGISTER_TARGET_CID
	if s := ft.u.Forwarded(); s.Sent != 1 {
		t.Errorf("Forwarded().Sent = %d after CLOSE_TARGET_CID, want still 1", s.Sent)
	}
}

// TestForwardReceive: a forwarded packet for a routed VCID comes out of
// ReadFrom unscrambled with the proxy's key, with the client CID back in
// place of a longer VCID; one too short to unscramble is dropped and
// counted.
func TestForwardReceive(t *testing.T) {
	ft := forwardTunnel(t)
	client := ft.clientCID(t)
	v, route := ft.routeClient(t, client, 12)

	pkt := shortHeader(client, 1200)
	wire := withVCID(pkt, len(client), v)
	if err := ft.fromProxy.Scramble(wire, len(v)); err != nil {
		t.Fatal(err)
	}
	route.Deliver(wire)
	buf := make([]byte, 2048)
	n, addr, err := ft.u.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], pkt) {
		t.Fatalf("ReadFrom = %d bytes, %v; want the packet as the target sent it", n, err)
	}
	if addr != ft.u.RemoteAddr() {
		t.Errorf("ReadFrom's address %v, want the target's", addr)
	}
	route.Deliver(wire[:1+len(v)+15])
	if s := ft.u.Forwarded(); s.Received != 1 || s.Dropped != 1 {
		t.Errorf("Forwarded() = %+v, want 1 received and 1 dropped", s)
	}
}

// TestForwardAllocs: a packet forwarded each way costs no allocation.
func TestForwardAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	ft := forwardTunnel(t)
	p := ft.peer
	client := ft.clientCID(t)
	target := vcid(8)
	p.sendDatagram(t, longHeader(client, target, 1200))
	buf := make([]byte, 2048)
	if _, _, err := ft.u.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	out := shortHeader(target, 1200)
	if _, err := ft.u.WriteTo(out, nil); err != nil { // registers target
		t.Fatal(err)
	}
	p.expectDatagram(t)
	p.expect(t, quicproxy.TypeRegisterTargetCID)
	p.send(t, quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: target, VCID: vcid(8)})
	v, route := ft.routeClient(t, client, 8) // after the target's ACK too
	in := withVCID(shortHeader(client, 1200), len(client), v)
	if err := ft.fromProxy.Scramble(in, len(v)); err != nil {
		t.Fatal(err)
	}
	rbuf := make([]byte, 2048)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := ft.u.WriteTo(out, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ft.proxyUDP.ReadFromUDPAddrPort(rbuf); err != nil {
			t.Fatal(err)
		}
		route.Deliver(in)
		if _, _, err := ft.u.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet forwarded each way", allocs)
	}
	if s := ft.u.Forwarded(); s.Sent < 1000 || s.Received < 1000 {
		t.Errorf("Forwarded() = %+v: the packets did not go forwarded", s)
	}
}

// TestForwardClose: Close removes the tunnel's routes and later packets
// fail as on a closed conn; a tunnel without forwarded mode has no
// generator and zero counters.
func TestForwardClose(t *testing.T) {
	ft := forwardTunnel(t)
	v, _ := ft.routeClient(t, ft.clientCID(t), 8)
	if err := ft.u.Close(); err != nil {
		t.Fatal(err)
	}
	if ft.sock.routeOf(v) != nil {
		t.Error("a closed tunnel's VCID is still routed")
	}
	if _, err := ft.u.WriteTo(shortHeader(v, 100), nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
	}

	plain := echoTunnel(t)
	if plain.Forwarding() || plain.ConnectionIDGenerator() != nil || plain.Forwarded() != (ForwardStats{}) {
		t.Error("a tunnel without forwarded mode reports forwarding")
	}
}
