package iptunnel

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
func newRelaySession(t testing.TB) (*Session, *countingDevice, *discardDatagrams) {
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
	proxy, err := tunnel.New(tunnel.Config{Metrics: m})
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
	se.relayed.Store(true)
	t.Cleanup(func() { se.Close() })
	return se, dev, dc
}

// TestIPPathAllocs checks that a packet each way costs no allocation on
// the proxy's side: from the client through the checks to the device, and
// from the device through the tunnel's queue to the client's datagrams.
func TestIPPathAllocs(t *testing.T) {
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
