package h3proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/quicproxy"
)

// These tests speak draft-ietf-masque-quic-proxy to the proxy by hand, on
// the wire, so that they check the proxy's side of forwarded mode apart
// from our client's: negotiation, the capsules, the rewrite and scramble of
// packets both ways, and what is dropped.

// fwdClient is a QUIC connection to the proxy whose UDP socket the test
// also uses to send and receive forwarded packets, as the draft has them
// share the 4-tuple.
type fwdClient struct {
	sock     *net.UDPConn
	conn     *quic.Conn
	cc       *http3.RawClientConn
	diverted chan []byte // tagged short-header packets: forwarded to us
}

// divertConn hands quic-go every packet but forwarded ones, whose
// destination connection ID has the VCID tag (our connection IDs never do).
// It hides the socket's other methods: with them, quic-go would read the
// socket itself, in batches, past ReadFrom.
type divertConn struct {
	net.PacketConn
	diverted chan []byte
}

// SetReadBuffer takes quic-go's tuning, which the test does not need.
func (d *divertConn) SetReadBuffer(int) error { return nil }

func (d *divertConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := d.PacketConn.ReadFrom(p)
		if err != nil || n < 2 || p[0]&0x80 != 0 || p[1]&0x80 == 0 {
			return n, addr, err
		}
		select {
		case d.diverted <- bytes.Clone(p[:n]):
		default:
		}
	}
}

func dialRaw(t *testing.T, p *testProxy) *fwdClient {
	t.Helper()
	c := &fwdClient{sock: testnet.UDP(t, "127.0.0.1"), diverted: make(chan []byte, 64)}
	tr := &quic.Transport{Conn: &divertConn{PacketConn: c.sock, diverted: c.diverted}, ConnectionIDGenerator: untaggedCIDs{}}
	t.Cleanup(func() { tr.Close() })
	tlsConf := testnet.NewCert(t).ClientTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, p.Addr, tlsConf, &quic.Config{EnableDatagrams: true, InitialPacketSize: 1350})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	c.conn = conn
	c.cc = (&http3.Transport{EnableDatagrams: true}).NewRawClientConn(conn)
	go func() {
		for {
			str, err := conn.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			c.cc.HandleUnidirectionalStream(str)
		}
	}()
	return c
}

// fwdTunnel is one CONNECT-UDP request with its capsules read into caps.
type fwdTunnel struct {
	rs   *http3.RequestStream
	resp *http.Response
	caps chan quicproxy.Capsule
}

// open sends a CONNECT-UDP request to target with forwarding header fwd
// ("" for none).
func (c *fwdClient) open(t *testing.T, p *testProxy, target *net.UDPAddr, fwd string) *fwdTunnel {
	t.Helper()
	ctx := testContext(t)
	tmpl, err := masque.ParseTemplate(masque.DefaultUDPTemplate)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := masque.ParseAuthority(target.String())
	if err != nil {
		t.Fatal(err)
	}
	u, err := tmpl.Expand(p.Addr.String(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{http3.CapsuleProtocolHeader: {"?1"}}
	if fwd != "" {
		h.Set(quicproxy.HeaderForwarding, fwd)
	}
	req := &http.Request{Method: http.MethodConnect, Proto: masque.ProtocolConnectUDP, Host: u.Host, URL: u, Header: h}
	if err := rs.SendRequestHeader(req.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, Proxy-Status %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
	}
	ft := &fwdTunnel{rs: rs, resp: resp, caps: make(chan quicproxy.Capsule, 64)}
	go func() {
		cr := capsule.NewReader(bufio.NewReader(rs))
		cr.HandleOther(quicproxy.IsCapsuleType, func(typ uint64, value []byte) error {
			c, err := quicproxy.Parse(typ, bytes.Clone(value))
			if err != nil {
				t.Errorf("proxy sent a malformed capsule 0x%x: %v", typ, err)
				return err
			}
			ft.caps <- c
			return nil
		})
		buf := make([]byte, 2048)
		for {
			if _, err := cr.ReadDatagram(buf); err != nil {
				close(ft.caps)
				return
			}
		}
	}()
	t.Cleanup(func() {
		rs.CancelRead(0)
		rs.CancelWrite(0)
	})
	return ft
}

func (ft *fwdTunnel) send(t *testing.T, c *quicproxy.Capsule) {
	t.Helper()
	if _, err := ft.rs.Write(c.Append(nil)); err != nil {
		t.Fatal(err)
	}
}

// expect returns the next capsule, which must be of type typ.
func (ft *fwdTunnel) expect(t *testing.T, typ uint64) quicproxy.Capsule {
	t.Helper()
	select {
	case c, ok := <-ft.caps:
		if !ok {
			t.Fatalf("stream ended waiting for capsule 0x%x", typ)
		}
		if c.Type != typ {
			t.Fatalf("capsule 0x%x, want 0x%x", c.Type, typ)
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("no capsule 0x%x", typ)
	}
	return quicproxy.Capsule{}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// shortPacket is a QUIC short-header packet to dcid with payload.
func shortPacket(dcid, payload []byte) []byte {
	return append(append([]byte{0x40 | 0x01}, dcid...), payload...)
}

func scrambler(t *testing.T, key []byte) *quicproxy.Scrambler {
	t.Helper()
	s, err := quicproxy.NewScrambler(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readTimeout(t *testing.T, c *net.UDPConn, d time.Duration) ([]byte, *net.UDPAddr, bool) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil, nil, false
	}
	return buf[:n], from, true
}

func TestForwardedModeOnTheWire(t *testing.T) {
	p := startForwardingProxy(t, "127.0.0.1")
	target := testnet.UDP(t, "127.0.0.1")
	c := dialRaw(t, p)
	clientKey := randomBytes(t, 32)
	offer := quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformScramble}, ScrambleKey: clientKey}
	ft := c.open(t, p, target.LocalAddr().(*net.UDPAddr), offer.String())

	got, err := quicproxy.ParseForwarding(ft.resp.Header.Get(quicproxy.HeaderForwarding))
	if err != nil || !got.Enabled || got.Transform != quicproxy.TransformScramble || len(got.ScrambleKey) != 32 {
		t.Fatalf("Proxy-QUIC-Forwarding = %q (%v), want ?1 with transform scramble-dt and a key", ft.resp.Header.Get(quicproxy.HeaderForwarding), err)
	}
	if ps := ft.resp.Header.Get(quicproxy.HeaderPortSharing); ps != "?0" {
		t.Errorf("Proxy-QUIC-Port-Sharing = %q, want ?0", ps)
	}
	toProxy, fromProxy := scrambler(t, clientKey), scrambler(t, got.ScrambleKey)
	if m := ft.expect(t, quicproxy.TypeMaxConnectionIDs); m.MaxSeq < 2 {
		t.Fatalf("MAX_CONNECTION_IDS %d", m.MaxSeq)
	}

	// Client to target: REGISTER_TARGET_CID, then a packet to the VCID.
	targetCID := randomBytes(t, 8)
	ft.send(t, &quicproxy.Capsule{Type: quicproxy.TypeRegisterTargetCID, CID: targetCID})
	ack := ft.expect(t, quicproxy.TypeAckTargetCID)
	if !bytes.Equal(ack.CID, targetCID) || len(ack.VCID) != 20 || ack.VCID[0]&0x80 == 0 {
		t.Fatalf("ACK_TARGET_CID %x -> %x, want %x and a tagged 20-byte VCID", ack.CID, ack.VCID, targetCID)
	}
	payload := randomBytes(t, 100)
	pkt := shortPacket(ack.VCID, payload)
	if err := toProxy.Scramble(pkt, len(ack.VCID)); err != nil {
		t.Fatal(err)
	}
	fwdAddr := p.Addr
	if _, err := c.sock.WriteToUDP(pkt, fwdAddr); err != nil {
		t.Fatal(err)
	}
	atTarget, proxySide, ok := readTimeout(t, target, 10*time.Second)
	if want := shortPacket(targetCID, payload); !ok || !bytes.Equal(atTarget, want) {
		t.Fatalf("target got %x, want %x", atTarget, want)
	}
	if n := p.metric(t, "masqued_forwarded_packets_total", "direction", "up"); n != 1 {
		t.Errorf("forwarded up = %v, want 1", n)
	}

	// Target to client: REGISTER_CLIENT_CID, ACK_CLIENT_VCID, then the
	// target's packets to the client CID arrive forwarded and scrambled.
	clientCID := randomBytes(t, 8)
	ft.send(t, &quicproxy.Capsule{Type: quicproxy.TypeRegisterClientCID, CID: clientCID})
	cack := ft.expect(t, quicproxy.TypeAckClientCID)
	if !bytes.Equal(cack.CID, clientCID) || len(cack.VCID) != len(clientCID) || cack.VCID[0]&0x80 == 0 || bytes.Equal(cack.VCID, clientCID) {
		t.Fatalf("ACK_CLIENT_CID %x -> %x, want a tagged VCID of the CID's length", cack.CID, cack.VCID)
	}
	ft.send(t, &quicproxy.Capsule{Type: quicproxy.TypeAckClientVCID, CID: clientCID, VCID: cack.VCID})
	down := randomBytes(t, 200)
	var forwarded []byte
	for deadline := time.Now().Add(10 * time.Second); forwarded == nil && time.Now().Before(deadline); {
		// Until the proxy has read ACK_CLIENT_VCID, the packet goes in a
		// DATAGRAM frame instead: send again.
		if _, err := target.WriteToUDP(shortPacket(clientCID, down), proxySide); err != nil {
			t.Fatal(err)
		}
		select {
		case forwarded = <-c.diverted:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if forwarded == nil {
		t.Fatal("no forwarded packet from the target")
	}
	if bytes.Equal(forwarded[1+len(cack.VCID):], down) {
		t.Error("the forwarded packet is not scrambled")
	}
	if err := fromProxy.Unscramble(forwarded, len(cack.VCID)); err != nil {
		t.Fatal(err)
	}
	if want := shortPacket(cack.VCID, down); !bytes.Equal(forwarded, want) {
		t.Fatalf("client got %x, want %x", forwarded, want)
	}

	// A forged VCID and a packet from another address are dropped and
	// counted, and never reach the target.
	forged := shortPacket(append([]byte{0x80}, randomBytes(t, 19)...), payload)
	if _, err := c.sock.WriteToUDP(forged, fwdAddr); err != nil {
		t.Fatal(err)
	}
	other := testnet.UDP(t, "127.0.0.1")
	stolen := shortPacket(ack.VCID, payload)
	if err := toProxy.Scramble(stolen, len(ack.VCID)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.WriteToUDP(stolen, fwdAddr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drops counted", func() bool {
		return p.metric(t, "masqued_forwarded_dropped_total", "reason", "unknown_vcid") == 1 &&
			p.metric(t, "masqued_forwarded_dropped_total", "reason", "wrong_path") == 1
	})
	if b, _, ok := readTimeout(t, target, 100*time.Millisecond); ok {
		t.Fatalf("a dropped packet reached the target: %x", b)
	}

	// CLOSE_TARGET_CID removes the mapping: the VCID is unknown from then on.
	ft.send(t, &quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID, CID: targetCID})
	eventually(t, "the closed VCID dropped", func() bool {
		again := shortPacket(ack.VCID, payload)
		if err := toProxy.Scramble(again, len(ack.VCID)); err != nil {
			t.Fatal(err)
		}
		c.sock.WriteToUDP(again, fwdAddr)
		if b, _, ok := readTimeout(t, target, 20*time.Millisecond); ok {
			t.Logf("still forwarded: %x", b[:9])
			return false
		}
		return p.metric(t, "masqued_forwarded_dropped_total", "reason", "unknown_vcid") >= 2
	})
}

func TestForwardedModeNotOffered(t *testing.T) {
	offer := quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformScramble}, ScrambleKey: make([]byte, 32)}
	identityOnly := quicproxy.Forwarding{Enabled: true, AcceptTransforms: []string{quicproxy.TransformIdentity}}
	tests := []struct {
		name       string
		forwarding bool   // the proxy serves a ForwardSocket
		header     string // the client's Proxy-QUIC-Forwarding
	}{
		{"main listener", false, offer.String()},
		{"client does not ask", true, ""},
		{"client asks with ?0", true, "?0"},
		{"identity transform only", true, identityOnly.String()},
		{"no scramble key", true, `?1; accept-transform="scramble-dt"`},
		{"not a boolean", true, `"yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := serveProxy(t, "127.0.0.1", tt.forwarding)
			echo := testnet.UDPEcho(t, "127.0.0.1")
			c := dialRaw(t, p)
			ft := c.open(t, p, echo, tt.header)
			if h := ft.resp.Header.Get(quicproxy.HeaderForwarding); h != "" {
				t.Fatalf("Proxy-QUIC-Forwarding = %q, want none", h)
			}
			// Plain RFC 9298: a datagram still goes through.
			qd := capsule.NewQUICDatagrams(c.conn, ft.rs.StreamID())
			b := append(make([]byte, capsule.MaxHeaderLen), 0, 'h', 'i')
			if err := qd.SendDatagram(b, capsule.MaxHeaderLen); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dg, err := ft.rs.ReceiveDatagram(ctx)
			if err != nil || string(dg) != "\x00hi" {
				t.Fatalf("echo %q, %v", dg, err)
			}
		})
	}
}
