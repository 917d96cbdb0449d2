package h3

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque/quicproxy"
)

// The tests here send runs of packets with UDP_SEGMENT, as masqued sends
// what it forwards, to a forwardConn with UDP_GRO: on loopback the kernel
// hands each run over whole, in one read. It coalesces only packets of one
// size from one sender, so a run is the unit that mixes kinds of packets.

// groConn returns a forwardConn on a new loopback socket for the proxy at
// proxy, skipping the test where the kernel lacks UDP_GRO or UDP_SEGMENT.
func groConn(t *testing.T, proxy *net.UDPConn) *forwardConn {
	t.Helper()
	fc := newForwardConn(testnet.UDP(t, "127.0.0.1"), proxy.LocalAddr().(*net.UDPAddr).AddrPort())
	t.Cleanup(func() { fc.Close() })
	if fc.gro == nil {
		t.Skip("the kernel refuses UDP_GRO (Linux 5.0 has it): the forwardConn reads one packet per call")
	}
	rc, err := proxy.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var gsoErr error
	if err := rc.Control(func(fd uintptr) { _, gsoErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT) }); err != nil || gsoErr != nil {
		t.Skip("the kernel lacks UDP_SEGMENT (Linux 4.18 has it): no runs to send")
	}
	return fc
}

// sendRun sends pkts from from to to in one sendmsg with UDP_SEGMENT: all
// but the last must be of one size, the last no longer.
func sendRun(t testing.TB, from *net.UDPConn, to net.Addr, pkts ...[]byte) {
	t.Helper()
	sendSegments(t, from, to.(*net.UDPAddr).AddrPort(), len(pkts[0]), slices.Concat(pkts...))
}

// sendSegments sends run from from to to as packets of seg bytes (the last
// may be shorter) in one sendmsg with UDP_SEGMENT, allocating nothing.
func sendSegments(t testing.TB, from *net.UDPConn, to netip.AddrPort, seg int, run []byte) {
	t.Helper()
	var oob [32]byte
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	if _, _, err := from.WriteMsgUDPAddrPort(run, oob[:unix.CmsgSpace(2)], to); err != nil {
		t.Fatal(err)
	}
}

// shortHeader returns a packet of n random bytes with a short header whose
// DCID begins with dcid.
func shortHeader(n int, dcid []byte) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] = 0x40 | b[0]&0x3f
	copy(b[1:], dcid)
	return b
}

// quicCID is a CID of the connection to the proxy: top bit clear.
func quicCID() []byte {
	b := vcid(proxyCIDLen)
	b[0] &^= 0x80
	return b
}

// readWant reads the next packet from fc into a buffer of bufLen bytes; it
// must be want (cut to bufLen), from from.
func readWant(t *testing.T, fc *forwardConn, bufLen int, want []byte, from net.Addr) {
	t.Helper()
	buf := make([]byte, bufLen)
	n, addr, err := fc.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], want[:min(len(want), bufLen)]) || addr.String() != from.String() {
		t.Fatalf("ReadFrom = %d bytes %x… from %v, %v; want %d bytes %x… from %v", n, buf[:min(n, 8)], addr, err, min(len(want), bufLen), want[:8], from)
	}
}

// TestForwardConnGRO: runs that mix quic-go's packets with forwarded-looking
// ones for no route, from the proxy and from elsewhere, and single packets
// between them: each of quic-go's comes out of ReadFrom once, in order, with
// its sender's address, before the socket is read again; the others are
// dropped and counted. A packet longer than ReadFrom's buffer is cut to it,
// and the next begins where it should.
func TestForwardConnGRO(t *testing.T) {
	proxy, other := testnet.UDP(t, "127.0.0.1"), testnet.UDP(t, "127.0.0.1")
	fc := groConn(t, proxy)
	if err := fc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	to := fc.LocalAddr()
	q1, q2, q3 := shortHeader(1200, quicCID()), shortHeader(1200, quicCID()), shortHeader(700, quicCID())
	long := shortHeader(1200, nil)
	long[0] |= 0x80
	forged, forged2 := shortHeader(1200, vcid(8)), shortHeader(1200, vcid(20))
	single := shortHeader(90, quicCID())
	sendRun(t, proxy, to, q1, forged, long, forged2, q2, q3)
	sendRun(t, proxy, to, single)
	sendRun(t, other, to, forged, q2, q1)
	readWant(t, fc, 1452, q1, proxy.LocalAddr())
	if got, queued := fc.unrouted.Load(), fc.gro.nquic-fc.gro.next; got != 2 || queued != 3 {
		t.Fatalf("after the first packet of a run of 6, %d forged packets are counted and %d of quic-go's queued, want 2 and 3: the run was not read whole and split at once", got, queued)
	}
	readWant(t, fc, 1452, long, proxy.LocalAddr())
	for _, w := range []struct {
		b    []byte
		from net.Addr
	}{{q2, proxy.LocalAddr()}, {q3, proxy.LocalAddr()}, {single, proxy.LocalAddr()}, {q2, other.LocalAddr()}, {q1, other.LocalAddr()}} {
		readWant(t, fc, 1452, w.b, w.from)
	}
	if got := fc.unrouted.Load(); got != 3 {
		t.Errorf("unrouted = %d, want 3 (two forged VCIDs from the proxy, one from elsewhere)", got)
	}

	// Cut to a short buffer, without shifting the packets after.
	sendRun(t, proxy, to, q1, q2, q3)
	for _, w := range [][]byte{q1, q2, q3} {
		readWant(t, fc, 1000, w, proxy.LocalAddr())
	}
	if fc.gro.next != fc.gro.nquic || fc.gro.scan != fc.gro.end {
		t.Errorf("packets left in the buffer after the run's last")
	}
}

// TestForwardConnGROAllocs: reading runs of quic-go's packets and forwarded
// ones for no route allocates nothing, the sends included.
func TestForwardConnGROAllocs(t *testing.T) {
	proxy := testnet.UDP(t, "127.0.0.1")
	fc := groConn(t, proxy)
	if err := fc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	pkts := make([][]byte, 16)
	for i := range pkts {
		if i%2 == 0 {
			pkts[i] = shortHeader(1252, quicCID())
		} else {
			pkts[i] = shortHeader(1252, vcid(8))
		}
	}
	run := slices.Concat(pkts...)
	to := fc.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 1452)
	var bad error
	allocs := testing.AllocsPerRun(50, func() {
		sendSegments(t, proxy, to, 1252, run)
		for range len(pkts) / 2 {
			if n, _, err := fc.ReadFrom(buf); err != nil || n != 1252 {
				bad = errors.Join(bad, err, errors.New("a packet of the wrong size"))
				return
			}
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per run of %d packets, want 0", allocs, len(pkts))
	}
	if got, want := fc.unrouted.Load(), uint64(51*len(pkts)/2); got != want { // AllocsPerRun runs once more to warm up
		t.Errorf("unrouted = %d, want %d", got, want)
	}
}

// TestForwardConnGROClose: closing the socket ends a ReadFrom that waits
// for a packet with net.ErrClosed, and a read deadline ends one with a
// timeout, as quic-go's Transport.Close sets one.
func TestForwardConnGROClose(t *testing.T) {
	proxy := testnet.UDP(t, "127.0.0.1")
	fc := groConn(t, proxy)
	if err := fc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, _, err := fc.ReadFrom(make([]byte, 1452)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadFrom past the deadline = %v, want a timeout", err)
	}
	if err := fc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 1452)
		for {
			_, _, err := fc.ReadFrom(buf)
			if err != nil {
				read <- err
				return
			}
			got <- struct{}{} // the next ReadFrom waits
		}
	}()
	sendRun(t, proxy, fc.LocalAddr(), shortHeader(1200, quicCID()))
	select {
	case <-got:
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("no packet read")
	}
	if err := fc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("ReadFrom still waits after Close")
	}
}

// routeClientCID has u's first client CID routed: it takes the CID's
// registration on tun and acknowledges it with a new VCID, and returns
// both once the client has taken the VCID.
func routeClientCID(t *testing.T, u *UDPConn, tun *proxyTunnel) (cid, v []byte) {
	t.Helper()
	id, err := u.ConnectionIDGenerator().GenerateConnectionID()
	if err != nil {
		t.Fatal(err)
	}
	cid = id.Bytes()
	if r := tun.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(r.CID, cid) {
		t.Fatalf("registered %x, want %x", r.CID, cid)
	}
	v = vcid(len(cid))
	tun.send(t, "acked", quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid, VCID: v})
	read(t, u, []byte("acked"))
	tun.expect(t, quicproxy.TypeAckClientVCID)
	return cid, v
}

// TestForwardingGRO: a client reads a run from the proxy's socket that
// mixes forwarded packets to a routed client VCID, forwarded-looking ones to
// no route and packets for the connection to the proxy: the routed ones come
// out of the tunnel's ReadFrom once each, in order, unscrambled with the
// client CID back, without allocating (but under the race detector, whose
// pools drop buffers); the unrouted are counted; and the connection to the
// proxy works on.
func TestForwardingGRO(t *testing.T) {
	p, url, cert := startProxy(t, forwardingAnswer)
	c := dialForwardingClient(t, url, cert, true)
	if c.fwd.gro == nil {
		t.Skip("the kernel refuses UDP_GRO (Linux 5.0 has it)")
	}
	u, err := c.ListenUDP(testnet.Context(t, time.Minute), "192.0.2.1:443")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tun := p.tunnel(t)
	toClient, err := quicproxy.NewScrambler(p.key)
	if err != nil {
		t.Fatal(err)
	}
	cid, v := routeClientCID(t, u, tun)

	// forward returns a packet of n bytes to the client CID and its wire
	// form: to the VCID, scrambled.
	forward := func(n int) (pkt, wire []byte) {
		pkt = shortHeader(n, cid)
		wire = slices.Clone(pkt)
		copy(wire[1:], v)
		if err := toClient.Scramble(wire, len(v)); err != nil {
			t.Fatal(err)
		}
		return pkt, wire
	}
	p1, w1 := forward(1200)
	p2, w2 := forward(1200)
	p3, w3 := forward(1200)
	p4, w4 := forward(600)
	sendRun(t, p.udp, tun.client, w1, shortHeader(1200, vcid(len(v))), shortHeader(1200, quicCID()), w2, w3, shortHeader(1200, quicCID()), w4)
	for _, want := range [][]byte{p1, p2, p3, p4} {
		read(t, u, want)
	}
	if got := c.ForwardUnrouted(); got != 1 {
		t.Errorf("ForwardUnrouted() = %d, want 1", got)
	}
	if s := u.Forwarded(); s.Received != 4 {
		t.Errorf("Forwarded() = %+v, want 4 received", s)
	}

	pkts := make([][]byte, 8)
	wires := make([][]byte, 8)
	for i := range pkts {
		pkts[i], wires[i] = forward(1252)
	}
	if err := u.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	run := slices.Concat(wires...)
	to := tun.client.AddrPort()
	buf := make([]byte, 2048)
	var bad error
	allocs := testing.AllocsPerRun(20, func() {
		sendSegments(t, p.udp, to, 1252, run)
		for _, want := range pkts {
			if n, _, err := u.ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], want) {
				bad = errors.Join(bad, err, errors.New("a packet not as sent"))
				return
			}
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	// Under the race detector sync.Pool drops packet buffers on purpose.
	if allocs != 0 && !raceEnabled {
		t.Errorf("%v allocations per run of %d forwarded packets, want 0", allocs, len(pkts))
	}
	if _, err := c.DialTCP(testnet.Context(t, time.Minute), "192.0.2.1:443"); err != nil {
		t.Fatalf("the connection to the proxy after the runs: %v", err)
	}
}
