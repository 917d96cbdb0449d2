package tunnel

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
)

// chanDatagrams is a DatagramConn over channels of reused buffers: it stands
// in for QUIC's datagram queue so that the relay's own allocations can be
// counted apart from quic-go's (which copies every datagram it sends).
type chanDatagrams struct {
	in   chan []byte // to the relay
	out  chan []byte // from the relay; the receiver hands the buffer back on free
	free chan []byte
}

func (d *chanDatagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case b := <-d.in:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *chanDatagrams) SendDatagram(buf []byte, off int) error {
	b := <-d.free
	d.out <- append(b[:0], buf[off:]...)
	return nil
}

// idleStream is a client stream on which nothing arrives until Abort or
// CloseWrite, as on a QUIC connection that carries only datagrams.
type idleStream struct {
	done chan struct{}
	once sync.Once
}

func (s *idleStream) Read([]byte) (int, error)    { <-s.done; return 0, context.Canceled }
func (s *idleStream) Write(b []byte) (int, error) { return len(b), nil }
func (s *idleStream) CloseWrite() error           { return nil }
func (s *idleStream) Abort() error                { s.once.Do(func() { close(s.done) }); return nil }

// datagramRoundTrip sets up a UDP tunnel to a real UDP echo server on
// loopback and returns a function that sends one datagram through the relay
// and waits for its echo.
func datagramRoundTrip(tb testing.TB) func() {
	p, err := New(Config{Policy: Policy{AllowPrivate: true}})
	if err != nil {
		tb.Fatal(err)
	}
	echo := testnet.UDPEcho(tb, testnet.IPv4)
	r := &http.Request{Method: http.MethodConnect, URL: &url.URL{}, Header: http.Header{}}
	tun, err := p.Front("test").Open(context.Background(), r, KindUDP,
		masque.Target{Host: testnet.IPv4, Port: uint16(echo.Port)}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	dc := &chanDatagrams{in: make(chan []byte), out: make(chan []byte), free: make(chan []byte, 1)}
	dc.free <- make([]byte, 2048)
	client := &idleStream{done: make(chan struct{})}
	relayDone := make(chan error, 1)
	go func() { relayDone <- tun.Relay(client, dc) }()
	tb.Cleanup(func() { client.Abort(); <-relayDone })

	payload := make([]byte, 1200)
	msg := append([]byte{capsule.ContextUDP}, payload...)
	return func() {
		dc.in <- msg
		b := <-dc.out
		if len(b) != len(msg) {
			tb.Fatalf("echo of %d bytes, want %d", len(b), len(msg))
		}
		dc.free <- b
	}
}

// TestDatagramRelayAllocs proves the UDP relay allocates nothing per
// datagram, in either direction.
func TestDatagramRelayAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	roundTrip := datagramRoundTrip(t)
	roundTrip() // warm up pools and sockets
	if n := testing.AllocsPerRun(1000, roundTrip); n != 0 {
		t.Errorf("%v allocations per datagram round trip, want 0", n)
	}
}

func BenchmarkDatagramRelay(b *testing.B) {
	roundTrip := datagramRoundTrip(b)
	b.ReportAllocs()
	b.SetBytes(2 * 1200)
	for b.Loop() {
		roundTrip()
	}
}
