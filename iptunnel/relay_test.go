package iptunnel

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

// countingDevice stands for the TUN device: it counts what is written.
type countingDevice struct{ writes atomic.Int64 }

func (d *countingDevice) Read([]byte) (int, error)    { select {} }
func (d *countingDevice) Write(b []byte) (int, error) { d.writes.Add(1); return len(b), nil }
func (d *countingDevice) Close() error                { return nil }

// discardDatagrams stands for the client's QUIC datagrams.
type discardDatagrams struct{ sent atomic.Int64 }

func (d *discardDatagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (d *discardDatagrams) SendDatagram(buf []byte, off int) error {
	d.sent.Add(1)
	return nil
}

// newRelaySession builds a Server on a fake device and one session on it,
// admitted by a real tunnel core (default policy, metrics on).
func newRelaySession(t testing.TB, limits ...tunnel.Limits) (*Session, *countingDevice, *discardDatagrams) {
	s, _, err := configure(Config{Pools: []netip.Prefix{netip.MustParsePrefix("10.78.0.0/24"), netip.MustParsePrefix("fd78::/64")},
		Registerer: prometheus.NewPedanticRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	dev := &countingDevice{}
	s.dev = dev
	m, err := tunnel.NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := tunnel.Config{Metrics: m}
	if len(limits) > 0 {
		c.Limits = limits[0]
	}
	proxy, err := tunnel.New(c)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("CONNECT", "/.well-known/masque/ip/*/*/", nil)
	se, err := s.Open(context.Background(), proxy.Front("h3"), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	dc := &discardDatagrams{}
	se.datagram = dc
	t.Cleanup(func() { se.Close() })
	return se, dev, dc
}

// TestIPPathAllocs checks that a packet each way costs no allocation on
// the proxy's side: from the client through the checks to the device, and
// from the device through the tunnel's queue to the client's datagrams.
func TestIPPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers under the race detector; make test runs this without -race")
	}
	se, dev, dc := newRelaySession(t)
	up := ipv4Packet(se.addrs[0].String(), "8.8.8.8", protoUDP, append(ports(40000, 443), make([]byte, 1200)...))
	if a := testing.AllocsPerRun(1000, func() { se.up(up) }); a != 0 {
		t.Errorf("client to device: %v allocations per packet", a)
	}
	if dev.writes.Load() == 0 {
		t.Fatal("no packet reached the device")
	}
	down := ipv4Packet("8.8.8.8", se.addrs[0].String(), protoUDP, append(ports(443, 40000), make([]byte, 1200)...))
	if a := testing.AllocsPerRun(1000, func() { relayDown(se, down) }); a != 0 {
		t.Errorf("device to client: %v allocations per packet", a)
	}
	if dc.sent.Load() == 0 {
		t.Fatal("no packet reached the client")
	}
}

// relayDown does what the device reader and the tunnel's writer do for
// one packet: a pooled buffer, the session's queue, the send.
func relayDown(se *Session, pkt []byte) {
	bp := se.s.bufs.Get().(*[]byte)
	n := copy((*bp)[headroom:], pkt)
	se.enqueue(bp, n)
	p := <-se.down
	_ = se.sendDown(p)
	se.s.bufs.Put(p.buf)
}

func TestPolicyDropsCounted(t *testing.T) {
	se, dev, _ := newRelaySession(t)
	before := dev.writes.Load()
	se.up(ipv4Packet(se.addrs[0].String(), "127.0.0.1", protoTCP, ports(1, 22)))
	se.up(ipv4Packet("10.78.0.99", "8.8.8.8", protoTCP, ports(1, 22)))
	if dev.writes.Load() != before {
		t.Fatal("a refused packet reached the device")
	}
	for _, r := range []int{dropProhibited, dropBadSource} {
		if v := counterValue(t, se.s.metrics.dropped[r]); v != 1 {
			t.Errorf("%s drops: %v, want 1", dropNames[r], v)
		}
	}
	if len(se.down) != 2 {
		t.Fatalf("%d ICMP errors queued for the client, want 2", len(se.down))
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	m := <-ch
	pb := new(dto.Metric)
	if err := m.Write(pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

func BenchmarkUp(b *testing.B) {
	se, _, _ := newRelaySession(b)
	pkt := ipv4Packet(se.addrs[0].String(), "8.8.8.8", protoUDP, append(ports(40000, 443), make([]byte, 1200)...))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		se.up(pkt)
	}
}

func BenchmarkDown(b *testing.B) {
	se, _, _ := newRelaySession(b)
	pkt := ipv4Packet("8.8.8.8", se.addrs[0].String(), protoUDP, append(ports(443, 40000), make([]byte, 1200)...))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		relayDown(se, pkt)
	}
}

// pipeStream is a client stream that carries nothing until it is aborted.
type pipeStream struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newPipeStream() *pipeStream {
	r, w := io.Pipe()
	return &pipeStream{r, w}
}

func (p *pipeStream) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeStream) Write(b []byte) (int, error) { return len(b), nil }
func (p *pipeStream) CloseWrite() error           { return nil }
func (p *pipeStream) Abort() error                { return p.w.CloseWithError(net.ErrClosed) }

// TestIdleTimeout checks that a tunnel without packets ends at the idle
// timeout, counted as such, and gives its addresses back.
func TestIdleTimeout(t *testing.T) {
	se, _, _ := newRelaySession(t, tunnel.Limits{IdleTimeout: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- se.Relay(newPipeStream(), &discardDatagrams{}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Relay: %v, want nil for the idle timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle tunnel still open")
	}
	if !se.idle.Load() {
		t.Fatal("tunnel ended, but not for the idle timeout")
	}
	se.s.mu.RLock()
	defer se.s.mu.RUnlock()
	if len(se.s.sessions) != 0 {
		t.Fatalf("%d addresses still routed to the ended tunnel", len(se.s.sessions))
	}
}

// tooLargeDatagrams refuses every datagram as too large for the path.
type tooLargeDatagrams struct{ discardDatagrams }

func (*tooLargeDatagrams) SendDatagram([]byte, int) error { return masque.ErrDatagramTooLarge }

// recordingDevice keeps the packets written to it.
type recordingDevice struct {
	countingDevice
	mu      sync.Mutex
	packets [][]byte
}

func (d *recordingDevice) Write(b []byte) (int, error) {
	d.mu.Lock()
	d.packets = append(d.packets, slices.Clone(b))
	d.mu.Unlock()
	return len(b), nil
}

// TestPacketTooBig checks that a packet for the client that its QUIC path
// cannot carry is dropped, counted, and answered to its sender with an
// ICMP fragmentation-needed naming the tunnel's MTU (RFC 9484 §10.1).
func TestPacketTooBig(t *testing.T) {
	se, _, _ := newRelaySession(t)
	dev := &recordingDevice{}
	se.s.dev = dev
	se.datagram = &tooLargeDatagrams{}
	relayDown(se, ipv4Packet("8.8.8.8", se.addrs[0].String(), protoUDP, append(ports(443, 40000), make([]byte, 1200)...)))
	if v := counterValue(t, se.s.metrics.dropped[dropTooLarge]); v != 1 {
		t.Fatalf("too_large drops: %v, want 1", v)
	}
	if len(dev.packets) != 1 {
		t.Fatalf("%d packets written back, want one ICMP error", len(dev.packets))
	}
	p := dev.packets[0]
	h, ok := parseHeader(p)
	if !ok || h.dst.String() != "8.8.8.8" || h.proto != protoICMP || p[h.transport] != 3 || p[h.transport+1] != 4 ||
		binary.BigEndian.Uint16(p[h.transport+6:]) != 1280 {
		t.Fatalf("wrote %x, want fragmentation needed (MTU 1280) to 8.8.8.8", p[:min(len(p), 40)])
	}
}
