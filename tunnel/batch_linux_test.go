package tunnel

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
)

// countingDatagrams is a DatagramConn that takes one datagram from the test
// and then counts what the relay sends, checking each payload's first byte.
type countingDatagrams struct {
	chanDatagrams // for ReceiveDatagram; SendDatagram is this type's own
	sent          atomic.Int64
	wrong         atomic.Int64 // datagrams not of Context ID 0, or whose payload does not start with its sequence byte
	signal        chan struct{}
	want          atomic.Int64 // signal once sent reaches this
}

func (d *countingDatagrams) SendDatagram(buf []byte, off int) error {
	n := d.sent.Add(1)
	if len(buf) <= off || buf[off] != capsule.ContextUDP || (len(buf) > off+1 && buf[off+1] != byte(n)) {
		d.wrong.Add(1)
	}
	if n == d.want.Load() {
		d.signal <- struct{}{}
	}
	return nil
}

// burstTunnel opens a UDP tunnel to a socket of the test's own and returns
// the tunnel's DatagramConn and a function that makes the target send n
// packets in one GSO write (UDP_SEGMENT), as a QUIC origin sends its
// full-size packets: size bytes each, the last one last bytes. It waits
// until the relay has sent want of them to the client (with want 0, not at
// all).
func burstTunnel(tb testing.TB) (*countingDatagrams, func(n, size, last, want int)) {
	p, err := New(Config{Policy: Policy{AllowPrivate: true}})
	if err != nil {
		tb.Fatal(err)
	}
	origin := testnet.UDP(tb, testnet.IPv4)
	port := origin.LocalAddr().(*net.UDPAddr).Port
	r := &http.Request{Method: http.MethodConnect, URL: &url.URL{}, Header: http.Header{}}
	tun, err := p.Front("test").Open(context.Background(), r, KindUDP,
		masque.Target{Host: testnet.IPv4, Port: uint16(port)}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	dc := &countingDatagrams{chanDatagrams: chanDatagrams{in: make(chan []byte, 1)}, signal: make(chan struct{}, 1)}
	client := &idleStream{done: make(chan struct{})}
	relayDone := make(chan error, 1)
	go func() { relayDone <- tun.Relay(client, dc) }()
	tb.Cleanup(func() { client.Abort(); <-relayDone })

	// The relay's address, from its first packet to the target.
	dc.in <- []byte{capsule.ContextUDP, 'h', 'i'}
	var b [16]byte
	_, relayAddr, err := origin.ReadFromUDP(b[:])
	if err != nil {
		tb.Fatal(err)
	}
	rc, err := origin.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	pkt := make([]byte, 64<<10)
	gsoSize := 0
	return dc, func(n, size, last, want int) {
		if n == 1 {
			size = last // no segmentation: one packet of any size
		}
		if gso := size * min(n-1, 1); gso != gsoSize {
			_ = rc.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, gso)
			})
			if err != nil {
				tb.Fatal(err)
			}
			gsoSize = gso
		}
		base := dc.sent.Load()
		dc.want.Store(base + int64(want))
		for i := range n {
			pkt[i*size] = byte(base + int64(i) + 1)
		}
		if _, err := origin.WriteToUDP(pkt[:(n-1)*size+last], relayAddr); err != nil {
			tb.Fatal(err)
		}
		if want == 0 {
			return
		}
		select {
		case <-dc.signal:
		case <-time.After(10 * time.Second): // a burst takes well under 10 ms
			tb.Fatalf("the relay sent %d of %d packets", dc.sent.Load()-base, want)
		}
	}
}

// TestToClientBursts sends the target's packets through the relay in runs
// that the kernel may coalesce (UDP_GRO): every packet reaches the client
// whole and in order, and one too large for the tunnel is dropped.
func TestToClientBursts(t *testing.T) {
	dc, burst := burstTunnel(t)
	for _, tc := range []struct{ n, size, last int }{
		{1, 0, 1200},
		{1, 0, 0}, // an empty UDP packet is a datagram too
		{2, 1200, 1200},
		{16, 1200, 1200},
		{16, 1200, 500}, // a short last packet
		{53, 1200, 1200},
		{3, 16384, 16384}, // the largest that Limits.MaxUDPPayload lets through, coalesced
	} {
		burst(tc.n, tc.size, tc.last, tc.n)
		if dc.wrong.Load() != 0 {
			t.Fatalf("after %d packets of %d bytes: a packet reached the client misframed or out of order", tc.n, tc.size)
		}
	}
	sent := dc.sent.Load()
	// A packet over Limits.MaxUDPPayload is dropped; the next comes through.
	burst(1, 0, 16385, 0)
	burst(1, 0, 1200, 1)
	if n := dc.sent.Load() - sent; n != 1 {
		t.Errorf("%d of an oversized and a small packet reached the client, want the small one", n)
	}
}

// BenchmarkToClientBurst measures the relay's target-to-client path for
// bursts of 16 packets of 1200 bytes sent in one GSO write, and reports the
// process's CPU time (user+system) per packet beside the wall time; the
// target's own write is in that CPU time too.
func BenchmarkToClientBurst(b *testing.B) {
	_, burst := burstTunnel(b)
	const n = 16
	burst(n, 1200, 1200, n) // warm up pools and sockets
	b.ReportAllocs()
	b.SetBytes(n * 1200)
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for b.Loop() {
		burst(n, 1200, 1200, n)
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/pkt")
}
