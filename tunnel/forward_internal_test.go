package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/net/ipv4"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/quicproxy"
)

// fixedPeer is a client connection that stays at one address.
type fixedPeer struct{ addr net.Addr }

func (p fixedPeer) RemoteAddr() net.Addr { return p.addr }

// register hands the capsule c to fw as if it came from the client.
func register(tb testing.TB, fw *Forwarding, c *quicproxy.Capsule) {
	tb.Helper()
	b := c.Append(nil)
	typ, n, err := quicvarint.Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	_, m, err := quicvarint.Parse(b[n:])
	if err != nil {
		tb.Fatal(err)
	}
	if err := fw.handle(typ, b[n+m:]); err != nil {
		tb.Fatal(err)
	}
}

// forwardedPath is one tunnel in forwarded mode to a UDP echo server, with
// the client's connection ID registered both ways (the echo sends the
// client's packets back to the same connection ID), and a socket in the
// client's place.
type forwardedPath struct {
	fs        *ForwardSocket
	quicGo    chan quicGoPacket // what the socket's reads hand to quic-go
	fw        *Forwarding
	client    *net.UDPConn
	targetVID []byte // the VCID the client sends to
	clientVID []byte // the VCID the client receives on
	toProxy   *quicproxy.Scrambler
	fromProxy *quicproxy.Scrambler
}

func newForwardedPath(tb testing.TB) *forwardedPath {
	tb.Helper()
	p, err := New(Config{Policy: Policy{AllowPrivate: true}})
	if err != nil {
		tb.Fatal(err)
	}
	fp := &forwardedPath{fs: NewForwardSocket(testnet.UDP(tb, testnet.IPv4), nil), client: testnet.UDP(tb, testnet.IPv4), quicGo: make(chan quicGoPacket, 64)}
	readerDone := make(chan struct{})
	go func() { // in quic-go's place: it reads what is not forwarded, as quic-go does
		defer close(readerDone)
		ms := make([]ipv4.Message, 8)
		for i := range ms {
			ms[i].Buffers, ms[i].OOB = [][]byte{make([]byte, 2048)}, make([]byte, 64)
		}
		for {
			n, err := fp.fs.ReadBatch(ms, 0)
			if err != nil {
				return
			}
			for _, m := range ms[:n] {
				select {
				case fp.quicGo <- quicGoPacket{bytes.Clone(m.Buffers[0][:m.N]), m.Addr}:
				default:
				}
			}
		}
	}()
	tb.Cleanup(func() { fp.fs.Close(); <-readerDone })

	echo := testnet.UDPEcho(tb, testnet.IPv4)
	r := &http.Request{Method: http.MethodConnect, URL: &url.URL{}, Header: http.Header{}}
	tun, err := p.Front("test").Open(context.Background(), r, KindUDP, masque.Target{Host: testnet.IPv4, Port: uint16(echo.Port)}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	offer := quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformScramble}, ScrambleKey: key}
	resp, fw := fp.fs.Negotiate(offer.String(), fixedPeer{fp.client.LocalAddr()})
	if fw == nil {
		tb.Fatal("forwarded mode not negotiated")
	}
	answer, err := quicproxy.ParseForwarding(resp)
	if err != nil {
		tb.Fatal(err)
	}
	fp.fw = fw
	fp.toProxy, _ = quicproxy.NewScrambler(key)
	fp.fromProxy, _ = quicproxy.NewScrambler(answer.ScrambleKey)
	tun.UseForwarding(fw)
	dc := &chanDatagrams{in: make(chan []byte), out: make(chan []byte, 16), free: make(chan []byte, 16)}
	for range 16 {
		dc.free <- make([]byte, 2048)
	}
	client := &idleStream{done: make(chan struct{})}
	relayDone := make(chan error, 1)
	go func() { relayDone <- tun.Relay(client, dc) }()
	tb.Cleanup(func() { client.Abort(); <-relayDone })
	for fw.relay.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	cid := []byte("cid-8byt")
	register(tb, fw, &quicproxy.Capsule{Type: quicproxy.TypeRegisterTargetCID, CID: cid})
	register(tb, fw, &quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: cid})
	fw.mu.Lock()
	fp.targetVID, fp.clientVID = fw.targets[0].vcid, fw.clients[0].vcid
	fw.mu.Unlock()
	register(tb, fw, &quicproxy.Capsule{Type: quicproxy.TypeAckClientVCID, CID: cid, VCID: fp.clientVID})
	return fp
}

// quicGoPacket is a packet the ForwardSocket hands to quic-go.
type quicGoPacket struct {
	b    []byte
	from net.Addr
}

// The ForwardSocket keeps quic-go's batched reads: quic-go reads a socket
// through ReadBatch where it has one.
var _ interface {
	quic.OOBCapablePacketConn
	ReadBatch([]ipv4.Message, int) (int, error)
} = (*ForwardSocket)(nil)

// TestForwardSocketReadBatch sends quic-go's packets with forwarded ones
// between them, and a tagged packet of no tunnel: quic-go gets its own, in
// order and from the client's address; the forwarded one is echoed back
// through the tunnel, and the unknown one goes nowhere.
func TestForwardSocketReadBatch(t *testing.T) {
	fp := newForwardedPath(t)
	long := append([]byte{0xc0, 0, 0, 0, 1}, bytes.Repeat([]byte{1}, 1200)...) // a long header
	short := append([]byte{0x41, 0x01}, bytes.Repeat([]byte{2}, 1200)...)      // a short header, untagged CID
	unknown := append([]byte{0x41, 0x80}, bytes.Repeat([]byte{3}, 40)...)      // tagged, no such VCID
	for _, p := range [][]byte{long, fp.packet(t, 1200), unknown, short} {
		if _, err := fp.client.WriteTo(p, fp.fs.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	from := fp.client.LocalAddr().String()
	for _, want := range [][]byte{long, short} {
		select {
		case got := <-fp.quicGo:
			if !bytes.Equal(got.b, want) || got.from.String() != from {
				t.Fatalf("quic-go got %x… from %v, want %x… from %s", got.b[:8], got.from, want[:8], from)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("quic-go got nothing")
		}
	}
	buf := make([]byte, 2048)
	fp.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := fp.client.Read(buf); err != nil || n != 1+len(fp.clientVID)+1200 {
		t.Fatalf("the forwarded packet's echo: %d bytes, %v", n, err)
	}
	select {
	case got := <-fp.quicGo:
		t.Fatalf("quic-go also got %x…", got.b[:8])
	case <-time.After(100 * time.Millisecond):
	}
}

// TestForwardedUpRun: packets gathered for one UDP_SEGMENT write to the
// target (three of equal size and a shorter one that ends the run, then one
// larger, which starts the next) all reach it, in order, and come back.
func TestForwardedUpRun(t *testing.T) {
	fp := newForwardedPath(t)
	if !fp.fs.gso.Load() {
		t.Skip("no UDP_SEGMENT on this kernel")
	}
	sizes := []int{1000, 1000, 1000, 400, 1200}
	var run upRun
	for i, n := range sizes {
		pkt := append(append([]byte{0x41}, "cid-8byt"...), bytes.Repeat([]byte{byte(i)}, n)...)
		run.add(fp.fw, pkt)
	}
	run.flush()
	buf := make([]byte, 2048)
	for i, n := range sizes {
		fp.client.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := fp.client.Read(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if err := fp.fromProxy.Unscramble(buf[:got], len(fp.clientVID)); err != nil {
			t.Fatal(err)
		}
		if want := 1 + len(fp.clientVID) + n; got != want || buf[got-1] != byte(i) {
			t.Fatalf("packet %d: %d bytes ending in %d, want %d ending in %d", i, got, buf[got-1], want, i)
		}
	}
}

// packet is a scrambled forwarded packet to the target VCID with a
// payload of n bytes.
func (fp *forwardedPath) packet(tb testing.TB, n int) []byte {
	pkt := append(append([]byte{0x41}, fp.targetVID...), bytes.Repeat([]byte{0xab}, n)...)
	if err := fp.toProxy.Scramble(pkt, len(fp.targetVID)); err != nil {
		tb.Fatal(err)
	}
	return pkt
}

// roundTrip sends pkt and reads what comes back into buf, unscrambled.
func (fp *forwardedPath) roundTrip(tb testing.TB, pkt, buf []byte) []byte {
	if _, err := fp.client.WriteTo(pkt, fp.fs.LocalAddr()); err != nil {
		tb.Fatal(err)
	}
	fp.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := fp.client.Read(buf)
	if err != nil {
		tb.Fatal(err)
	}
	if err := fp.fromProxy.Unscramble(buf[:n], len(fp.clientVID)); err != nil {
		tb.Fatal(err)
	}
	return buf[:n]
}

func TestForwardedRoundTrip(t *testing.T) {
	fp := newForwardedPath(t)
	pkt := fp.packet(t, 1200)
	got := fp.roundTrip(t, pkt, make([]byte, 2048))
	want := append(append([]byte{0x41}, fp.clientVID...), bytes.Repeat([]byte{0xab}, 1200)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x…, want %x…", got[:min(len(got), 40)], want[:40])
	}
}

// TestForwardedPathAllocs proves that forwarded mode allocates nothing per
// packet, in either direction.
func TestForwardedPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	fp := newForwardedPath(t)
	buf := make([]byte, 2048)
	pkt := fp.packet(t, 1200) // the proxy rewrites its own copy
	roundTrip := func() { fp.roundTrip(t, pkt, buf) }
	roundTrip() // warm up pools and sockets
	if n := testing.AllocsPerRun(1000, roundTrip); n != 0 {
		t.Errorf("%v allocations per forwarded round trip, want 0", n)
	}
}

// BenchmarkForwardedRelay is BenchmarkDatagramRelay's round trip in
// forwarded mode: the difference is what the outer connection costs.
func BenchmarkForwardedRelay(b *testing.B) {
	fp := newForwardedPath(b)
	buf := make([]byte, 2048)
	pkt := fp.packet(b, 1200)
	b.ReportAllocs()
	b.SetBytes(2 * 1200)
	for b.Loop() {
		fp.roundTrip(b, pkt, buf)
	}
}

// FuzzForwardedPacket feeds any bytes to both directions of forwarded mode:
// the uplink parser (a packet from the client, possibly with a VCID) and the
// downlink rewrite (a packet from the target). Neither may panic, and a
// packet the downlink rewrites keeps its length.
func FuzzForwardedPacket(f *testing.F) {
	fp := newForwardedPath(f)
	f.Add(fp.packet(f, 40), false)
	f.Add(append([]byte{0x41}, fp.targetVID...), false)
	f.Add(append([]byte{0x41}, []byte("cid-8byt0123456789abcdef")...), true)
	f.Add([]byte{0x80}, true)
	f.Add([]byte{}, false)
	from := fp.client.LocalAddr().(*net.UDPAddr).AddrPort()
	f.Fuzz(func(t *testing.T, pkt []byte, down bool) {
		if down {
			n := len(pkt)
			if fp.fw.rewriteDown(pkt) && len(pkt) != n {
				t.Fatal("rewrite changed the length")
			}
			return
		}
		if len(pkt) > 1 && pkt[0]&0x80 == 0 && VCIDTagged(pkt[1]) {
			fp.fs.forwardUp(pkt, from)
		}
	})
}

// FuzzForwardingCapsules feeds a tunnel any sequence of connection ID
// capsules, well-formed or not: the proxy never panics, never holds more
// than maxRegistrations connection IDs of either kind, and every target
// VCID it holds routes back to this tunnel.
func FuzzForwardingCapsules(f *testing.F) {
	fp := newForwardedPath(f)
	var seed []byte
	for _, c := range []quicproxy.Capsule{
		{Type: quicproxy.TypeRegisterClientCID, CID: []byte("client-1")},
		{Type: quicproxy.TypeRegisterTargetCID, CID: []byte("target-1")},
		{Type: quicproxy.TypeAckClientVCID, CID: []byte("client-1"), VCID: []byte("xxxxxxxx")},
		{Type: quicproxy.TypeCloseTargetCID, CID: []byte("target-1")},
		{Type: quicproxy.TypeCloseClientCID, CID: []byte("client-1")},
		{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 9},
	} {
		seed = c.Append(seed)
		f.Add(c.Append(nil))
	}
	f.Add(seed)
	f.Add([]byte{0x80, 0xff, 0xe6, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, stream []byte) {
		for len(stream) > 0 {
			typ, n, err := quicvarint.Parse(stream)
			if err != nil {
				return
			}
			length, m, err := quicvarint.Parse(stream[n:])
			if err != nil || uint64(len(stream[n+m:])) < length {
				return
			}
			value := stream[n+m : n+m+int(length)]
			stream = stream[n+m+int(length):]
			if !quicproxy.IsCapsuleType(typ) {
				continue
			}
			if err := fp.fw.handle(typ, value); err != nil {
				return // the tunnel would end here
			}
			fp.fw.mu.Lock()
			nc, nt := len(fp.fw.clients), len(fp.fw.targets)
			for _, r := range fp.fw.targets {
				fp.fs.mu.RLock()
				route := fp.fs.routes[[targetVCIDLen]byte(r.vcid)]
				fp.fs.mu.RUnlock()
				if route == nil || route.fw != fp.fw {
					t.Errorf("target VCID %x does not route to its tunnel", r.vcid)
				}
			}
			fp.fw.mu.Unlock()
			if nc > maxRegistrations || nt > maxRegistrations {
				t.Fatalf("%d client and %d target registrations held, at most %d each", nc, nt, maxRegistrations)
			}
		}
	})
}
