package h3proxy

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

// These tests run our client's forwarded mode against the proxy's, end to
// end: HTTP/3 to an origin inside a UDP tunnel, its packets forwarded.

// payloadOrigin serves /N: N pseudo-random bytes, the same for every N.
func payloadOrigin(t *testing.T) *net.UDPAddr {
	return testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Path[1:])
		if err != nil {
			http.Error(w, "want /SIZE", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		io.Copy(w, io.LimitReader(payload(), int64(n)))
	}))
}

func payload() io.Reader { return rand.NewChaCha8([32]byte{'m', 'a', 's', 'q'}) }

func payloadSum(n int) [32]byte {
	h := sha256.New()
	io.Copy(h, io.LimitReader(payload(), int64(n)))
	return [32]byte(h.Sum(nil))
}

// get fetches n bytes from the origin with rt and checks their SHA-256.
func get(t *testing.T, rt http.RoundTripper, origin *net.UDPAddr, n int) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, "https://localhost:"+strconv.Itoa(origin.Port)+"/"+strconv.Itoa(n), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil || got != int64(n) || [32]byte(h.Sum(nil)) != payloadSum(n) {
		t.Fatalf("read %d bytes (%v), want %d with their checksum", got, err, n)
	}
}

// tunnelledDown is how many packets the proxy sent to clients in DATAGRAM
// frames rather than forwarded.
func (p *testProxy) tunnelledDown(t *testing.T) float64 {
	return p.metric(t, "masqued_datagrams_total", "direction", "down") - p.metric(t, "masqued_forwarded_packets_total", "direction", "down")
}

// listenUDP opens a UDP tunnel to origin on c, closed at cleanup.
func listenUDP(t *testing.T, c *h3.Client, origin *net.UDPAddr) *h3.UDPConn {
	t.Helper()
	u, err := c.ListenUDP(testContext(t), origin.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// forwardingSetup starts an origin and a proxy that forwards, and dials our
// client to it with forwarded mode on.
func forwardingSetup(t *testing.T) (*net.UDPAddr, *testProxy, *h3.Client) {
	t.Helper()
	origin := payloadOrigin(t)
	p := startForwardingProxy(t, testnet.IPv4)
	return origin, p, p.dial(t, h3.Config{Forwarding: true})
}

func TestForwardedDownload(t *testing.T) {
	const size = 4 << 20
	origin, p, c := forwardingSetup(t)
	u := listenUDP(t, c, origin)
	if !u.Forwarding() {
		t.Fatal("forwarded mode not negotiated")
	}
	tr := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
	defer tr.Close()
	get(t, tr, origin, size)
	st := u.Forwarded()
	up, down := p.metric(t, "masqued_forwarded_packets_total", "direction", "up"), p.metric(t, "masqued_forwarded_packets_total", "direction", "down")
	t.Logf("client: %+v; proxy: %v up, %v down forwarded, %v down tunnelled", st, up, down, p.tunnelledDown(t))
	if st.Sent == 0 || st.Received == 0 || up == 0 || down == 0 {
		t.Fatalf("nothing forwarded one way: client %+v, proxy %v up and %v down", st, up, down)
	}
	// Only what the origin sent before the registrations were acknowledged
	// (the handshake and the first round trips) goes in DATAGRAM frames.
	if tun := p.tunnelledDown(t); tun > down/4 {
		t.Errorf("%v packets tunnelled to the client and %v forwarded: forwarded mode should carry nearly all", tun, down)
	}
	if drops := p.metric(t, "masqued_forwarded_dropped_total"); drops != 0 {
		t.Errorf("%v forwarded packets dropped", drops)
	}
}

// dcidRecorder is the inner connection's socket seen through: it counts
// the packets that reach the client and notes the destination connection
// IDs of the short-header ones (8 bytes, our generator's), forwarded or
// tunnelled.
type dcidRecorder struct {
	*h3.UDPConn
	mu      sync.Mutex
	dcids   map[string]bool
	packets int
}

func (d *dcidRecorder) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := d.UDPConn.ReadFrom(p)
	if err == nil {
		d.mu.Lock()
		d.packets++
		if n > 9 && p[0]&0x80 == 0 {
			d.dcids[string(p[1:9])] = true
		}
		d.mu.Unlock()
	}
	return n, addr, err
}

func (d *dcidRecorder) read() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.packets
}

func (d *dcidRecorder) used() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dcids)
}

// innerConn dials the origin over u, with u's connection IDs, through rec
// if it is not nil.
func innerConn(t *testing.T, u *h3.UDPConn, pc net.PacketConn, origin *net.UDPAddr) (*quic.Conn, *quic.Transport) {
	t.Helper()
	qt := &quic.Transport{Conn: pc, ConnectionIDGenerator: u.ConnectionIDGenerator()}
	t.Cleanup(func() { qt.Close() })
	tlsConf := testnet.NewCert(t).ClientTLS()
	tlsConf.ServerName, tlsConf.NextProtos = "localhost", []string{http3.NextProtoH3}
	conn, err := qt.Dial(testContext(t), origin, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn, qt
}

// TestForwardedOriginRotatesCIDs downloads enough that the origin moves to
// a new connection ID of ours (quic-go does after 5,000 to 15,000 packets):
// the new one was registered when it was made, so forwarding goes on.
func TestForwardedOriginRotatesCIDs(t *testing.T) {
	const size = 24 << 20 // over 15,000 packets
	origin, p, c := forwardingSetup(t)
	u := listenUDP(t, c, origin)
	rec := &dcidRecorder{UDPConn: u, dcids: map[string]bool{}}
	conn, _ := innerConn(t, u, rec, origin)
	get(t, (&http3.Transport{}).NewClientConn(conn), origin, size)
	down := p.metric(t, "masqued_forwarded_packets_total", "direction", "down")
	t.Logf("origin used %d of our connection IDs; %v packets forwarded down, %v tunnelled", rec.used(), down, p.tunnelledDown(t))
	if rec.used() < 2 {
		t.Fatalf("the origin used %d connection ID, want a rotation", rec.used())
	}
	if tun := p.tunnelledDown(t); tun > down/10 {
		t.Errorf("%v packets tunnelled to the client and %v forwarded: the rotation broke forwarding", tun, down)
	}
}

// TestForwardedInnerMigration moves the inner connection to a second
// tunnel through the same proxy (quic-go's path migration), as a client
// does to change its address at the proxy: the download after it arrives
// whole, over the new tunnel.
func TestForwardedInnerMigration(t *testing.T) {
	const size = 1 << 20
	origin, _, c := forwardingSetup(t)
	u1 := listenUDP(t, c, origin)
	conn, _ := innerConn(t, u1, u1, origin)
	cc := (&http3.Transport{}).NewClientConn(conn)
	get(t, cc, origin, size)

	u2 := listenUDP(t, c, origin)
	rec2 := &dcidRecorder{UDPConn: u2, dcids: map[string]bool{}}
	qt2 := &quic.Transport{Conn: rec2, ConnectionIDGenerator: u2.ConnectionIDGenerator()}
	defer qt2.Close()
	path, err := conn.AddPath(qt2)
	if err != nil {
		t.Fatal(err)
	}
	if err := path.Probe(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := path.Switch(); err != nil {
		t.Fatal(err)
	}
	before := rec2.read()
	get(t, cc, origin, size)
	// Every packet of a full-size download after the switch came over the
	// new tunnel: at least size/1500 of them.
	if got := rec2.read() - before; got < size/1500 {
		t.Fatalf("%d packets over the new tunnel during a download of %d bytes", got, size)
	}
	t.Logf("new tunnel: %d packets, forwarding %+v", rec2.read()-before, u2.Forwarded())
}

// TestForwardingFallback: where one side does not offer forwarded mode,
// the tunnel is a plain RFC 9298 one and works as before.
func TestForwardingFallback(t *testing.T) {
	const size = 256 << 10
	tests := []struct {
		name          string
		proxyForwards bool
		cfg           h3.Config
	}{
		{"proxy does not offer it", false, h3.Config{Forwarding: true}},
		{"client does not ask", true, h3.Config{}},
		{"client in capsule mode", true, h3.Config{Forwarding: true, DisableDatagrams: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := payloadOrigin(t)
			p := serveProxy(t, testnet.IPv4, tt.proxyForwards)
			c := p.dial(t, tt.cfg)
			u, err := c.ListenUDP(testContext(t), origin.String())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if u.Forwarding() {
				t.Fatal("forwarded mode negotiated")
			}
			tr := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
			defer tr.Close()
			get(t, tr, origin, size)
			if n := p.metric(t, "masqued_forwarded_packets_total"); n != 0 {
				t.Fatalf("%v packets forwarded", n)
			}
		})
	}
}
