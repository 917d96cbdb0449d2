package h3

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/quicproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tests here run the client against a forwarding proxy of their own: a
// quic-go HTTP/3 server that answers CONNECT-UDP as the test says, hands
// each tunnel's stream to the test, and whose socket sets aside the packets
// that look forwarded. masqued's own forwarding is tested end to end where
// both sides meet.

// splitConn is the test proxy's socket as its QUIC server reads it: short
// headers whose DCID has the top bit set (forwarded packets) go to
// forwarded, copied, instead. It embeds net.PacketConn, not the
// *net.UDPConn, which quic-go would read directly. Its QUIC server's own
// CIDs have the top bit clear (proxyCIDs), as a forwarding proxy's must.
type splitConn struct {
	net.PacketConn
	forwarded chan []byte
}

func (c *splitConn) SetReadBuffer(n int) error  { return c.PacketConn.(*net.UDPConn).SetReadBuffer(n) }
func (c *splitConn) SetWriteBuffer(n int) error { return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n) }

func (c *splitConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || n < 2 || p[0]&0x80 != 0 || p[1]&0x80 == 0 {
			return n, addr, err
		}
		select {
		case c.forwarded <- slices.Clone(p[:n]):
		default:
		}
	}
}

// testProxy is the forwarding proxy of a test.
type testProxy struct {
	udp       *net.UDPConn // the socket of its QUIC server, from which it forwards
	forwarded chan []byte
	tunnels   chan *proxyTunnel
	key       []byte // the proxy's scramble key
	// answer is the Proxy-QUIC-Forwarding value the proxy answers an offer
	// with; "" for none.
	answer string
}

// proxyTunnel is a CONNECT-UDP request the test proxy accepted.
type proxyTunnel struct {
	offer    string // the request's Proxy-QUIC-Forwarding
	client   *net.UDPAddr
	str      *http3.Stream
	capsules chan quicproxy.Capsule // the client's connection ID capsules
}

// startProxy starts a test proxy that answers with answer(key), key being
// its scramble key, and returns it and its URL. It stops at cleanup.
func startProxy(t *testing.T, answer func(key []byte) string) (*testProxy, string, testnet.Cert) {
	t.Helper()
	cert := testnet.NewCert(t)
	udp := testnet.UDP(t, "127.0.0.1")
	p := &testProxy{udp: udp, forwarded: make(chan []byte, 16), tunnels: make(chan *proxyTunnel, 4), key: make([]byte, 32)}
	rand.Read(p.key)
	p.answer = answer(p.key)
	tr := &quic.Transport{Conn: &splitConn{PacketConn: udp, forwarded: p.forwarded}, ConnectionIDGenerator: proxyCIDs{}}
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(cert.ServerTLS()), &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: http.HandlerFunc(p.serve), EnableDatagrams: true}
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		tr.Close()
	})
	return p, "https://" + udp.LocalAddr().String(), cert
}

func (p *testProxy) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(http3.CapsuleProtocolHeader, "?1")
	if p.answer != "" {
		w.Header().Set(quicproxy.HeaderForwarding, p.answer)
	}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	str, err := w.(http3.HTTPStreamer).HTTPStream()
	if err != nil {
		return
	}
	client, _ := net.ResolveUDPAddr("udp", r.RemoteAddr)
	tun := &proxyTunnel{offer: r.Header.Get(quicproxy.HeaderForwarding), client: client, str: str, capsules: make(chan quicproxy.Capsule, 64)}
	p.tunnels <- tun
	defer close(tun.capsules)
	cr := capsule.NewReader(bufio.NewReader(str))
	cr.HandleOther(quicproxy.IsCapsuleType, func(typ uint64, value []byte) error {
		c, err := quicproxy.Parse(typ, slices.Clone(value))
		if err == nil {
			tun.capsules <- c
		}
		return err
	})
	buf := make([]byte, 2048)
	for {
		if _, err := cr.ReadDatagram(buf); err != nil && !errors.Is(err, capsule.ErrTooLarge) {
			return
		}
	}
}

// forwardingAnswer is a proxy's acceptance of the scramble transform.
func forwardingAnswer(key []byte) string {
	return quicproxy.Forwarding{Enabled: true, Transform: quicproxy.TransformScramble, ScrambleKey: key}.String()
}

// dialForwardingClient dials the test proxy at url with Config.Forwarding.
func dialForwardingClient(t *testing.T, url string, cert testnet.Cert, forwarding bool) *Client {
	t.Helper()
	c, err := Dial(testnet.Context(t, time.Minute), url, Config{TLSConfig: cert.ClientTLS(), Forwarding: forwarding})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p *testProxy) tunnel(t *testing.T) *proxyTunnel {
	t.Helper()
	select {
	case tun := <-p.tunnels:
		return tun
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("no tunnel reached the proxy")
	}
	return nil
}

func (tun *proxyTunnel) expect(t *testing.T, typ uint64) quicproxy.Capsule {
	t.Helper()
	select {
	case c := <-tun.capsules:
		if c.Type != typ {
			t.Fatalf("the client sent %+v, want a capsule of type %#x", c, typ)
		}
		return c
	case <-time.After(time.Minute): // a hang bound
		t.Fatalf("no capsule of type %#x from the client", typ)
	}
	return quicproxy.Capsule{}
}

// send writes capsules on the tunnel's stream, and a DATAGRAM capsule
// holding marker after them, so that the client has handled them once it
// reads marker.
func (tun *proxyTunnel) send(t *testing.T, marker string, cs ...quicproxy.Capsule) {
	t.Helper()
	var b []byte
	for _, c := range cs {
		b = c.Append(b)
	}
	d := make([]byte, capsule.MaxHeaderLen+1+len(marker))
	copy(d[capsule.MaxHeaderLen+1:], marker)
	b = append(b, d[capsule.PutDatagramHeader(d, capsule.MaxHeaderLen):]...)
	if _, err := tun.str.Write(b); err != nil {
		t.Fatal(err)
	}
}

// read reads the next packet from u, which must be want.
func read(t *testing.T, u *UDPConn, want []byte) {
	t.Helper()
	if err := u.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := u.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("ReadFrom = %x, %v; want %x", buf[:n], err, want)
	}
}

func vcid(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] |= 0x80
	return b
}

// TestForwardingBothWays: a client with Config.Forwarding offers the
// scramble transform with a key of its own; once the proxy accepts it, a
// packet the proxy forwards from its socket to a routed client VCID comes
// out of ReadFrom with the client CID back, one to an unknown VCID is
// dropped and counted without reaching quic-go, and a short header to an
// acknowledged target CID leaves the client's socket forwarded, scrambled
// with the client's key, while the connection to the proxy works on.
func TestForwardingBothWays(t *testing.T) {
	p, url, cert := startProxy(t, forwardingAnswer)
	c := dialForwardingClient(t, url, cert, true)
	u, err := c.ListenUDP(testnet.Context(t, time.Minute), "192.0.2.1:443")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tun := p.tunnel(t)
	offer, err := quicproxy.ParseForwarding(tun.offer)
	if err != nil || !offer.Enabled || !slices.Equal(offer.AcceptTransforms, []string{quicproxy.TransformScramble}) || len(offer.ScrambleKey) != 32 {
		t.Fatalf("the request offered %q (%v), want ?1 with scramble-dt and a key", tun.offer, err)
	}
	if !u.Forwarding() {
		t.Fatal("the proxy accepted forwarded mode, but the tunnel does not forward")
	}
	toClient, err := quicproxy.NewScrambler(p.key)
	if err != nil {
		t.Fatal(err)
	}
	ofClient, err := quicproxy.NewScrambler(offer.ScrambleKey)
	if err != nil {
		t.Fatal(err)
	}

	id, err := u.ConnectionIDGenerator().GenerateConnectionID()
	if err != nil {
		t.Fatal(err)
	}
	cid := id.Bytes()
	if r := tun.expect(t, quicproxy.TypeRegisterClientCID); !bytes.Equal(r.CID, cid) {
		t.Fatalf("registered %x, want %x", r.CID, cid)
	}
	v := vcid(len(cid))
	tun.send(t, "acked", quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid, VCID: v})
	read(t, u, []byte("acked"))
	tun.expect(t, quicproxy.TypeAckClientVCID)

	// Target to client: the routed VCID from another address than the
	// proxy's, a forged VCID, then the real one.
	pkt := make([]byte, 1200)
	rand.Read(pkt)
	pkt[0] = 0x40 | pkt[0]&0x3f
	copy(pkt[1:], cid)
	forged, wire := slices.Clone(pkt), slices.Clone(pkt)
	copy(forged[1:], vcid(len(cid)))
	copy(wire[1:], v)
	for _, b := range [][]byte{forged, wire} {
		if err := toClient.Scramble(b, len(v)); err != nil {
			t.Fatal(err)
		}
	}
	other := testnet.UDP(t, "127.0.0.1")
	for _, s := range []struct {
		from *net.UDPConn
		b    []byte
	}{{other, wire}, {p.udp, forged}, {p.udp, wire}} {
		if _, err := s.from.WriteTo(s.b, tun.client); err != nil {
			t.Fatal(err)
		}
	}
	read(t, u, pkt)
	if got := c.ForwardUnrouted(); got != 2 {
		t.Errorf("ForwardUnrouted() = %d, want 2 (from elsewhere, and the forged VCID)", got)
	}

	// Client to target: the target's CID length from its long header, a
	// registration, then forwarded.
	target := make([]byte, 8)
	rand.Read(target)
	long := append([]byte{0xc0, 0, 0, 0, 1, byte(len(cid))}, cid...)
	long = append(append(long, byte(len(target))), target...)
	long = append(long, make([]byte, 1200-len(long))...)
	if err := tun.str.SendDatagram(append([]byte{0}, long...)); err != nil {
		t.Fatal(err)
	}
	read(t, u, long)
	out := make([]byte, 1000)
	rand.Read(out)
	out[0] = 0x40 | out[0]&0x3f
	copy(out[1:], target)
	if _, err := u.WriteTo(out, nil); err != nil {
		t.Fatal(err)
	}
	if r := tun.expect(t, quicproxy.TypeRegisterTargetCID); !bytes.Equal(r.CID, target) {
		t.Fatalf("registered target %x, want %x", r.CID, target)
	}
	tv := vcid(16)
	tun.send(t, "target acked", quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: target, VCID: tv})
	read(t, u, []byte("target acked"))
	if _, err := u.WriteTo(out, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-p.forwarded:
		if err := ofClient.Unscramble(got, len(tv)); err != nil {
			t.Fatal(err)
		}
		if want := slices.Concat(out[:1], tv, out[1+len(target):]); !bytes.Equal(got, want) {
			t.Fatalf("forwarded\n%x\nwant\n%x", got, want)
		}
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("nothing forwarded reached the proxy's socket")
	}
	if s := u.Forwarded(); s.Sent != 1 || s.Received != 1 {
		t.Errorf("Forwarded() = %+v, want 1 sent and 1 received", s)
	}
	if _, err := c.DialTCP(testnet.Context(t, time.Minute), "192.0.2.1:443"); err != nil {
		t.Fatalf("the connection to the proxy after forwarding: %v", err)
	}
}

// TestForwardingRefused: a proxy that answers without Proxy-QUIC-Forwarding,
// with ?0, or with a value that does not parse gives a plain tunnel; one
// that picks a transform the client did not offer fails the request; a
// client without Config.Forwarding offers nothing.
func TestForwardingRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(key []byte) string
		fails  bool
	}{
		{"no header", func([]byte) string { return "" }, false},
		{"?0", func([]byte) string { return "?0" }, false},
		{"malformed", func([]byte) string { return "?1; transform=scramble-dt" }, false},
		{"no key", func([]byte) string { return `?1; transform="scramble-dt"` }, false},
		{"identity", func(key []byte) string {
			return quicproxy.Forwarding{Enabled: true, Transform: quicproxy.TransformIdentity, ScrambleKey: key}.String()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, url, cert := startProxy(t, tc.answer)
			c := dialForwardingClient(t, url, cert, true)
			u, err := c.ListenUDP(testnet.Context(t, time.Minute), "192.0.2.1:443")
			if tc.fails {
				if err == nil || !strings.Contains(err.Error(), "did not offer") {
					u.Close()
					t.Fatalf("ListenUDP = %v, want the transform refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if u.Forwarding() || u.ConnectionIDGenerator() != nil {
				t.Fatal("a tunnel the proxy did not accept forwarded mode for forwards")
			}
			p.tunnel(t)
		})
	}
	t.Run("not offered", func(t *testing.T) {
		p, url, cert := startProxy(t, forwardingAnswer)
		c := dialForwardingClient(t, url, cert, false)
		u, err := c.ListenUDP(testnet.Context(t, time.Minute), "192.0.2.1:443")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if tun := p.tunnel(t); tun.offer != "" || u.Forwarding() {
			t.Fatalf("without Config.Forwarding the request offered %q", tun.offer)
		}
	})
}

// TestForwardConnSplit: on the socket of the connection to the proxy, long
// headers and short headers whose DCID has the top bit clear are quic-go's,
// from any address; forwarded-looking packets for no route are dropped and
// counted, from the proxy or elsewhere. The connection to the proxy's own
// CIDs never look forwarded.
func TestForwardConnSplit(t *testing.T) {
	proxy, other := testnet.UDP(t, "127.0.0.1"), testnet.UDP(t, "127.0.0.1")
	udp := testnet.UDP(t, "127.0.0.1")
	fc := newForwardConn(udp, proxy.LocalAddr().(*net.UDPAddr).AddrPort())
	t.Cleanup(func() { fc.Close() })
	long := []byte{0xc0, 0x80, 1, 2, 3}
	short := []byte{0x40, 0x7f, 1, 2, 3}
	spoofed := []byte{0x40, 0x80, 1, 2, 3}
	for _, s := range []struct {
		from *net.UDPConn
		b    []byte
	}{{proxy, long}, {other, spoofed}, {other, short}, {proxy, spoofed}, {proxy, short}} {
		if _, err := s.from.WriteTo(s.b, udp.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if err := fc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil { // a hang bound
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for _, want := range []struct {
		b    []byte
		from net.Addr
	}{{long, proxy.LocalAddr()}, {short, other.LocalAddr()}, {short, proxy.LocalAddr()}} {
		n, from, err := fc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], want.b) || from.String() != want.from.String() {
			t.Fatalf("ReadFrom = %x from %v, %v; want %x from %v", buf[:n], from, err, want.b, want.from)
		}
	}
	if got := fc.unrouted.Load(); got != 2 {
		t.Errorf("unrouted = %d, want 2", got)
	}
	gen := proxyCIDs{}
	for range 100 {
		id, err := gen.GenerateConnectionID()
		if err != nil || id.Len() != gen.ConnectionIDLen() || id.Bytes()[0]&0x80 != 0 {
			t.Fatalf("proxy CID %v, %v: want %d bytes, top bit clear", id, err, gen.ConnectionIDLen())
		}
	}
}

// TestForwardingClose: closing a forwarding Client closes its socket too.
func TestForwardingClose(t *testing.T) {
	_, url, cert := startProxy(t, forwardingAnswer)
	c, err := Dial(testnet.Context(t, time.Minute), url, Config{TLSConfig: cert.ClientTLS(), Forwarding: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.fwd.WriteTo([]byte{0}, c.fwd.proxyAddr); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the socket after Close: %v, want net.ErrClosed", err)
	}
}
