package geoegress_test

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/geoegress"
	"github.com/masqued/masqued/geoegress/geohint"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/resolver"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// e2eFeed pools egress addresses on 127/8 for London, Edinburgh and Paris,
// an unplaced default, and ::1 for Great Britain's IPv6.
const e2eFeed = `127.0.0.2,GB,GB-ENG,London,,gcpv
127.0.0.3,GB,GB-ENG,London,,gcpv
127.0.0.4,GB,GB-SCT,Edinburgh,,gcvw
127.0.0.6,FR,FR-IDF,Paris,,u09t
127.0.0.7,FR,FR-IDF,Paris,,u09t
127.0.0.9,,,,,
::1,GB,,,,
`

// e2e is a masqued HTTP/3 proxy with geo egress and its own resolver, and
// the origins its test zone names.
type e2e struct {
	proxy    *net.UDPAddr
	selector *geoegress.Selector
	origin   *net.TCPAddr // origin.test: A only
	he       *net.TCPAddr // he.test: its AAAA black-holes, its A answers
	locator  *geoegress.Locator
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	e := &e2e{origin: testnet.WhoAmI(t, testnet.IPv4)}
	e.he = testnet.WhoAmI(t, testnet.IPv4)
	hole := testnet.Blackhole(t, testnet.IPv6, e.he.Port)

	// The test zone, on a DNS server on loopback.
	pc := testnet.UDP(t, testnet.IPv4)
	zone := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		qn, qt := q.Question[0].Name, q.Question[0].Qtype
		add := func(s string) {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Error(err)
				return
			}
			m.Answer = append(m.Answer, rr)
		}
		switch {
		case qn == "origin.test." && qt == dns.TypeA, qn == "he.test." && qt == dns.TypeA:
			add(qn + " 60 IN A 127.0.0.1")
		case qn == "he.test." && qt == dns.TypeAAAA:
			add(qn + " 60 IN AAAA " + hole.IP.String())
		case qn == "origin.test.", qn == "he.test.":
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: zone}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-served })
	res, err := resolver.New(pc.LocalAddr().String(), resolver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })

	entries, err := geoegress.ParseFeed(strings.NewReader(e2eFeed))
	if err != nil {
		t.Fatal(err)
	}
	e.selector, err = geoegress.NewSelector(geoegress.Config{Entries: entries, Key: []byte("e2e test key, 16+ bytes")})
	if err != nil {
		t.Fatal(err)
	}
	e.locator = geoegress.OpenTestLocator(t)
	p, err := tunnel.New(tunnel.Config{
		Resolver: res,
		Dialer:   &geoegress.Dialer{Selector: e.selector, Locator: e.locator, AllowPrivate: true},
		Policy:   tunnel.Policy{AllowPrivate: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	ppc := testnet.UDP(t, testnet.IPv4)
	h3 := &h3proxy.Server{Proxy: p, TLSConfig: testnet.NewCert(t).ServerTLS()}
	done := make(chan error, 1)
	go func() { done <- h3.Serve(ppc) }()
	t.Cleanup(func() {
		h3.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy: %v", err)
		}
	})
	e.proxy = ppc.LocalAddr().(*net.UDPAddr)
	return e
}

// result is what one CONNECT through the proxy came to.
type result struct {
	status      int
	proxyStatus string
	egress      netip.Addr // the source address the origin saw
}

// connect opens a TCP tunnel to target from a client at clientIP (so that
// the proxy geolocates it there), with a Sec-CH-Geohash hint unless "",
// and reads which address the origin saw.
func (e *e2e) connect(t *testing.T, clientIP, target, hint string) result {
	t.Helper()
	ctx := testnet.Context(t, 20*time.Second)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(clientIP)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	defer pc.Close()
	tlsConf := testnet.NewCert(t).ClientTLS()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	tlsConf.ServerName = "localhost"
	qc, err := tr.Dial(ctx, e.proxy, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{}).NewClientConn(qc)
	rs, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &http.Request{Method: http.MethodConnect, Host: target, URL: &url.URL{Host: target}, Header: http.Header{}}
	if hint != "" {
		req.Header.Set(geohint.Header, hint)
	}
	if err := rs.SendRequestHeader(req.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	r := result{status: resp.StatusCode, proxyStatus: resp.Header.Get("Proxy-Status")}
	if r.status == http.StatusOK {
		r.egress = testnet.ReadWhoAmI(t, &streamConn{rs}).Addr()
	}
	rs.Close()
	return r
}

// streamConn lends a request stream the net.Conn that ReadWhoAmI takes.
type streamConn struct{ *http3.RequestStream }

func (streamConn) LocalAddr() net.Addr  { return nil }
func (streamConn) RemoteAddr() net.Addr { return nil }

func (e *e2e) want(t *testing.T, clientIP, hint string) netip.Addr {
	t.Helper()
	cell, err := e.locator.Cell(netip.MustParseAddr(clientIP), 4)
	if err != nil {
		t.Fatal(err)
	}
	if hint != "" {
		h, err := geohint.Parse(hint)
		if err != nil {
			t.Fatal(err)
		}
		cell = geoegress.NewCell(cell.Country(), "", h.Geohash)
	}
	return e.selector.Select(cell).IPv4
}

// TestEgressByCell: each client leaves from the address chosen for its
// cell, the same one tunnel after tunnel; other cells from their own pools.
func TestEgressByCell(t *testing.T) {
	e := startE2E(t)
	target := "origin.test:" + strconv.Itoa(e.origin.Port)
	for _, tc := range []struct {
		name, client string
		pool         []string
	}{
		{"London", geoegress.ClientLondon, []string{"127.0.0.2", "127.0.0.3"}},
		{"Edinburgh", geoegress.ClientEdinburgh, []string{"127.0.0.4"}},
		{"Paris", geoegress.ClientParis, []string{"127.0.0.6", "127.0.0.7"}},
		{"unplaced", "127.0.0.99", []string{"127.0.0.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := e.want(t, tc.client, "")
			for i := range 3 {
				r := e.connect(t, tc.client, target, "")
				if r.status != http.StatusOK {
					t.Fatalf("tunnel %d: %d %s", i, r.status, r.proxyStatus)
				}
				if r.egress != want || !contains(tc.pool, r.egress) {
					t.Fatalf("tunnel %d left from %s, want %s from %v", i, r.egress, want, tc.pool)
				}
				if r.proxyStatus != "" {
					t.Errorf("Proxy-Status %q on a plain success", r.proxyStatus)
				}
			}
		})
	}
}

func contains(pool []string, a netip.Addr) bool {
	for _, p := range pool {
		if netip.MustParseAddr(p) == a {
			return true
		}
	}
	return false
}

// TestEgressHint: a hint inside the client's country moves it to that cell;
// one outside is ignored and said so in Proxy-Status, and the tunnel opens.
func TestEgressHint(t *testing.T) {
	e := startE2E(t)
	target := "origin.test:" + strconv.Itoa(e.origin.Port)
	r := e.connect(t, geoegress.ClientLondon, target, "gcvwr-GB")
	if r.status != http.StatusOK || r.egress != netip.MustParseAddr("127.0.0.4") {
		t.Errorf("London client hinting Edinburgh: %d, left from %s, want 127.0.0.4", r.status, r.egress)
	}
	for _, hint := range []string{"u09tvw-FR", `"u09tvw"`, "not a geohash"} {
		r := e.connect(t, geoegress.ClientLondon, target, hint)
		if r.status != http.StatusOK {
			t.Fatalf("hint %q: %d %s", hint, r.status, r.proxyStatus)
		}
		if want := e.want(t, geoegress.ClientLondon, ""); r.egress != want {
			t.Errorf("hint %q: left from %s, want London's %s", hint, r.egress, want)
		}
		if !strings.HasPrefix(r.proxyStatus, "masqued; details=") || !strings.Contains(r.proxyStatus, "Sec-CH-Geohash ignored") {
			t.Errorf("hint %q: Proxy-Status %q", hint, r.proxyStatus)
		}
	}
}

// TestEgressHappyEyeballs: he.test's AAAA black-holes and its A answers; the
// tunnel connects over IPv4 after the attempt delay, from the client cell's
// pinned IPv4 address (not the host's default, as net.Dialer would). A
// dialer that never fell back would wait out the proxy's 10 s dial timeout
// and answer 504.
func TestEgressHappyEyeballs(t *testing.T) {
	e := startE2E(t)
	target := "he.test:" + strconv.Itoa(e.he.Port)
	r := e.connect(t, geoegress.ClientLondon, target, "")
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.proxyStatus)
	}
	if want := e.want(t, geoegress.ClientLondon, ""); r.egress != want {
		t.Errorf("left from %s, want the pinned %s", r.egress, want)
	}
}

// TestEgressUDP: a CONNECT-UDP tunnel's socket is bound to the selected
// address too. client/h3's client comes from 127.0.0.1, which the database
// does not place: the default pool.
func TestEgressUDP(t *testing.T) {
	e := startE2E(t)
	origin := testnet.UDPWhoAmI(t, testnet.IPv4)
	ctx := testnet.Context(t, 20*time.Second)
	c, err := h3.Dial(ctx, "https://"+e.proxy.String(), h3.Config{TLSConfig: testnet.NewCert(t).ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.ListenUDP(ctx, origin.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.WriteTo([]byte("who"), origin); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, _, err := u.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if seen := netip.MustParseAddrPort(string(buf[:n])); seen.Addr() != netip.MustParseAddr("127.0.0.9") {
		t.Errorf("origin saw %s, want the default pool's 127.0.0.9", seen)
	}
}
