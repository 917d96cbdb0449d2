package udpgso

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/udpgro"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quic-go keeps its batched reads, ECN and GSO on a Conn: it is an
// OOBCapablePacketConn, and has no ReadBatch of its own, so quic-go reads
// the socket itself.
var _ quic.OOBCapablePacketConn = (*Conn)(nil)

// receiver is a loopback socket that reads with UDP_GRO, so that a run
// sent in one UDP_SEGMENT send arrives in one read, with its segment size.
type receiver struct {
	*net.UDPConn
	t *testing.T
}

func newReceiver(t *testing.T, gro bool) receiver {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	_ = uc.SetReadBuffer(4 << 20)
	if gro {
		rc, err := uc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		rc.Control(func(fd uintptr) { serr = udpgro.Enable(fd) })
		if serr != nil {
			t.Skipf("no UDP_GRO on this kernel: %v", serr)
		}
	}
	return receiver{uc, t}
}

func (r receiver) addr() netip.AddrPort { return r.LocalAddr().(*net.UDPAddr).AddrPort() }

// read returns the next read's bytes and segment size (0: one packet).
func (r receiver) read() ([]byte, int) {
	r.t.Helper()
	buf, oob := make([]byte, 64<<10), make([]byte, udpgro.OOBLen)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := r.ReadMsgUDP(buf, oob)
	if err != nil {
		r.t.Fatal(err)
	}
	return buf[:n], udpgro.SegmentSize(oob[:oobn])
}

// newSender is a Conn on a loopback socket, without GSO where the kernel
// lacks it (then the test skips).
func newSender(t *testing.T) *Conn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(uc)
	t.Cleanup(func() { c.Close(); uc.Close() })
	if !c.gso.Load() {
		t.Skip("no UDP_SEGMENT on this kernel")
	}
	return c
}

// packet returns n bytes that start with id.
func packetOf(id uint32, n int) []byte {
	p := bytes.Repeat([]byte{byte(id)}, n)
	binary.BigEndian.PutUint32(p, id)
	return p
}

// TestSendBatchRuns sends one batch of packets to two addresses, written
// interleaved: each address's packets go out in order, in runs of equal
// size that a shorter packet ends and a larger one starts anew.
func TestSendBatchRuns(t *testing.T) {
	c := newSender(t)
	a, b := newReceiver(t, true), newReceiver(t, true)
	batch := newBatch()
	add := func(to receiver, id uint32, n int) { batch.add(packetOf(id, n), nil, to.addr()) }
	for i := range uint32(5) {
		add(a, i, 1200)
		if i < 3 {
			add(b, 100+i, 1200)
		}
	}
	add(a, 5, 500)    // shorter: ends a's first run
	add(b, 103, 1300) // larger: b's second run
	add(a, 6, 1200)
	add(a, 7, 1200)
	c.sendBatch(batch)

	want := func(r receiver, seg int, ids ...uint32) {
		t.Helper()
		got, gotSeg := r.read()
		var exp []byte
		for _, id := range ids {
			n := 1200
			switch id {
			case 5:
				n = 500
			case 103:
				n = 1300
			}
			exp = append(exp, packetOf(id, n)...)
		}
		if gotSeg != seg || !bytes.Equal(got, exp) {
			t.Fatalf("read %d bytes with segment size %d, want packets %v (%d bytes) with segment size %d", len(got), gotSeg, ids, len(exp), seg)
		}
	}
	want(a, 1200, 0, 1, 2, 3, 4, 5)
	want(a, 1200, 6, 7)
	want(b, 1200, 100, 101, 102)
	want(b, 0, 103)
}

// TestSendBatchKeepsControlMessages: packets whose control messages differ
// (here the ECN bits of the IP header) do not share a run, and each
// arrives with its own.
func TestSendBatchKeepsControlMessages(t *testing.T) {
	c := newSender(t)
	r := newReceiver(t, false)
	rc, _ := r.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) })
	tos := func(v byte) []byte {
		b := make([]byte, unix.CmsgSpace(1))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
		h.SetLen(unix.CmsgLen(1))
		b[unix.CmsgLen(0)] = v
		return b
	}
	batch := newBatch()
	marks := []byte{2, 2, 1, 1, 2}
	for i, m := range marks {
		batch.add(packetOf(uint32(i), 1000), tos(m), r.addr())
	}
	c.sendBatch(batch)
	buf, oob := make([]byte, 2000), make([]byte, 64)
	for i, m := range marks {
		r.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, oobn, _, _, err := r.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		got := byte(0xff)
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS {
				got = m.Data[0] & 3
			}
		}
		if n != 1000 || binary.BigEndian.Uint32(buf) != uint32(i) || got != m {
			t.Fatalf("packet %d: %d bytes, id %d, ECN %d; want 1000 bytes, ECN %d", i, n, binary.BigEndian.Uint32(buf), got, m)
		}
	}
}

// TestWriterRuns: a write that is already a run (quic-go's own GSO, its
// UDP_SEGMENT message saying so) goes out as one, and a single packet that
// carries one all the same joins the runs of its neighbours.
func TestWriterRuns(t *testing.T) {
	c := newSender(t)
	r := newReceiver(t, true)
	batch := newBatch()
	seg := appendCmsg(nil, 1400)
	batch.add(append(packetOf(1, 1400), packetOf(2, 1400)...), seg, r.addr()) // quic-go's run
	batch.add(packetOf(3, 1000), seg, r.addr())                               // one packet
	batch.add(packetOf(4, 1000), nil, r.addr())
	c.sendBatch(batch)
	if got, s := r.read(); s != 1400 || !bytes.Equal(got, append(packetOf(1, 1400), packetOf(2, 1400)...)) {
		t.Fatalf("quic-go's run: %d bytes, segment size %d", len(got), s)
	}
	if got, s := r.read(); s != 1000 || !bytes.Equal(got, append(packetOf(3, 1000), packetOf(4, 1000)...)) {
		t.Fatalf("single packets: %d bytes, segment size %d", len(got), s)
	}
}

// TestSendBatchWithoutGSO: where the kernel refused UDP_SEGMENT, each
// packet goes alone.
func TestSendBatchWithoutGSO(t *testing.T) {
	c := newSender(t)
	c.gso.Store(false)
	r := newReceiver(t, true)
	batch := newBatch()
	for i := range uint32(3) {
		batch.add(packetOf(i, 1200), nil, r.addr())
	}
	c.sendBatch(batch)
	for i := range uint32(3) {
		if got, s := r.read(); s != 0 || !bytes.Equal(got, packetOf(i, 1200)) {
			t.Fatalf("packet %d: %d bytes, segment size %d", i, len(got), s)
		}
	}
}

// TestSendBatchAllocs: queueing and sending a batch allocates nothing.
func TestSendBatchAllocs(t *testing.T) {
	c := newSender(t)
	r := newReceiver(t, true)
	go func() { // drain
		buf := make([]byte, 64<<10)
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
		}
	}()
	batch := newBatch()
	pkt, to := packetOf(1, 1200), r.addr()
	allocs := testing.AllocsPerRun(100, func() {
		for range 16 {
			batch.add(pkt, nil, to)
		}
		c.sendBatch(batch)
		batch.reset()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch of 16", allocs)
	}
}

// TestConnConcurrentWriters: writers on several goroutines, each to an
// address of its own, while the sender gathers; every packet arrives, in
// each writer's order, also after Close, and also where small packets, which
// an idle Conn writes straight to the socket, come between large ones.
func TestConnConcurrentWriters(t *testing.T) {
	const writers, perWriter = 4, 500
	sizeOf := func(writer, i int) int {
		if writer == writers-1 && i%3 != 0 {
			return 100 // below directBelow
		}
		return 1100 + writer
	}
	c := newSender(t)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		r := newReceiver(t, false)
		to := r.LocalAddr().(*net.UDPAddr)
		wg.Add(2)
		go func() { // the writer
			defer wg.Done()
			for i := range perWriter {
				if i == perWriter-50 && w == 0 {
					c.Close() // the rest go straight to the socket
				}
				if _, _, err := c.WriteMsgUDP(packetOf(uint32(i), sizeOf(w, i)), nil, to); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // its receiver
			defer wg.Done()
			buf := make([]byte, 2000)
			for i := range perWriter {
				r.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := r.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("writer %d: packet %d: %w", w, i, err)
					return
				}
				if got := binary.BigEndian.Uint32(buf); n != sizeOf(w, i) || got != uint32(i) {
					errs <- fmt.Errorf("writer %d: packet %d: got id %d, %d bytes", w, i, got, n)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSendRun: a run goes in one UDP_SEGMENT send while gso is set, and one
// packet per send once it is not; a connected socket takes the zero address.
func TestSendRun(t *testing.T) {
	r := newReceiver(t, true)
	uc, err := net.DialUDP("udp4", nil, r.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var gso atomic.Bool
	gso.Store(Supported(uc))
	if !gso.Load() {
		t.Skip("no UDP_SEGMENT on this kernel")
	}
	run := append(append(packetOf(1, 1000), packetOf(2, 1000)...), packetOf(3, 300)...)
	if err := SendRun(uc, run, 1000, netip.AddrPort{}, &gso); err != nil {
		t.Fatal(err)
	}
	if got, seg := r.read(); seg != 1000 || !bytes.Equal(got, run) {
		t.Fatalf("one send: %d bytes, segment size %d", len(got), seg)
	}
	gso.Store(false)
	if err := SendRun(uc, run, 1000, netip.AddrPort{}, &gso); err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{1000, 1000, 300} {
		if got, seg := r.read(); seg != 0 || !bytes.Equal(got, packetOf(uint32(i+1), n)) {
			t.Fatalf("packet %d alone: %d bytes, segment size %d", i+1, len(got), seg)
		}
	}
}
