package localproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/client/proxyconn"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// hosts are the loopback addresses the entry point is tested on.
var hosts = []string{testnet.IPv4, testnet.IPv6}

func TestSOCKS5Curl(t *testing.T) {
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) { testSOCKS5Curl(t, host) })
	}
}

// testSOCKS5Curl runs curl against the SOCKS5 server on host, for an origin
// on 127.0.0.1.
func testSOCKS5Curl(t *testing.T, host string) {
	e := start(t, host, true, nil)
	o := newOrigin(t, false)
	port := o.Listener.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		flag, host, target string
	}{
		// --socks5-hostname hands the name to the proxy, which resolves it.
		{"--socks5-hostname", "localhost", "tcp localhost:" + strconv.Itoa(port)},
		{"--socks5", "127.0.0.1", "tcp 127.0.0.1:" + strconv.Itoa(port)},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			path := "/" + strings.TrimLeft(tc.flag, "-")
			// localhost may resolve to ::1 first; the origin is on 127.0.0.1,
			// and the proxy's dialer tries both.
			got := testnet.Curl(t, tc.flag, e.socksAddr, "http://"+net.JoinHostPort(tc.host, strconv.Itoa(port))+path)
			if got != "hello "+path {
				t.Errorf("body %q", got)
			}
			if !slices.Contains(o.arrived(), path) {
				t.Errorf("the origin saw %q, not %s", o.arrived(), path)
			}
			if !slices.Contains(e.tun.seen(), tc.target) {
				t.Errorf("tunnels %q, want %q among them", e.tun.seen(), tc.target)
			}
		})
	}
}

// socksClient is a minimal SOCKS5 client for the tests.
type socksClient struct {
	t *testing.T
	c net.Conn
}

func dialSOCKS(t *testing.T, addr string) *socksClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &socksClient{t: t, c: c}
}

func (s *socksClient) write(b ...byte) {
	s.t.Helper()
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// expect reads len(want) bytes and compares them with want.
func (s *socksClient) expect(want ...byte) {
	s.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s.c, got); err != nil {
		s.t.Fatalf("reading %x: %v", want, err)
	}
	if !bytes.Equal(got, want) {
		s.t.Fatalf("got % x, want % x", got, want)
	}
}

// expectEOF checks that the server closes the connection without another
// byte.
func (s *socksClient) expectEOF() {
	s.t.Helper()
	b, err := io.ReadAll(s.c)
	if err != nil || len(b) > 0 {
		s.t.Fatalf("got % x, %v; want the end of the connection", b, err)
	}
}

// request sends a greeting and a request for cmd to addr, and returns the
// reply's code and bound address.
func (s *socksClient) request(cmd byte, addr socksAddr) (byte, socksAddr) {
	s.t.Helper()
	s.write(5, 1, 0)
	s.expect(5, 0)
	s.write(appendReply(nil, cmd, addr)...) // a request has a reply's layout
	var hdr [3]byte
	if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
		s.t.Fatal(err)
	}
	bnd, err := readAddr(s.c)
	if err != nil {
		s.t.Fatal(err)
	}
	return hdr[1], bnd
}

func ipAddr(ap netip.AddrPort) socksAddr { return socksAddr{ip: ap.Addr(), port: ap.Port()} }

func TestSOCKS5UDPAssociate(t *testing.T) {
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) { testSOCKS5UDPAssociate(t, host) })
	}
}

// testSOCKS5UDPAssociate runs a UDP association with the SOCKS5 server on
// host, to echo servers on host.
func testSOCKS5UDPAssociate(t *testing.T, host string) {
	e := start(t, host, true, func(e *env) { e.socks.MaxUDPFlows = 2 })
	checkSOCKS5UDPAssociate(t, e, host)
}

// TestSOCKS5UDPThroughChain is the association's test with the entry point
// on a two-hop chain: each tunnel runs on the egress connection, which runs
// in one UDP tunnel through the relay.
func TestSOCKS5UDPThroughChain(t *testing.T) {
	egress := proxytest.StartH3(t, testnet.IPv4, true)
	relay := proxytest.StartRelay(t, testnet.IPv4, egress)
	first := dialProxy(t, relay.URL, &client.Dialer{QUICConfig: h3.RelayQUICConfig()})
	second := dialProxy(t, egress.URL, &client.Dialer{Relay: first})
	e := startOn(t, testnet.IPv4, egress, second, func(e *env) { e.socks.MaxUDPFlows = 2 })
	checkSOCKS5UDPAssociate(t, e, testnet.IPv4)
	if n := relay.Metric(t, "masqued_tunnels_total", "kind", "udp"); n != 1 {
		t.Errorf("the relay opened %v UDP tunnels, want 1 (to the egress)", n)
	}
	if n := relay.Metric(t, "masqued_tunnels_total", "kind", "tcp"); n != 0 {
		t.Errorf("the relay opened %v TCP tunnels, want none", n)
	}
}

// checkSOCKS5UDPAssociate runs a UDP association with e's SOCKS5 server on
// host (MaxUDPFlows 2), to echo servers on host.
func checkSOCKS5UDPAssociate(t *testing.T, e *env, host string) {
	echo1, echo2, echo3 := testnet.UDPEcho(t, host), testnet.UDPEcho(t, host), testnet.UDPEcho(t, host)
	s := dialSOCKS(t, e.socksAddr)
	rep, bnd := s.request(cmdUDPAssociate, socksAddr{ip: netip.IPv4Unspecified()})
	if rep != replySucceeded || bnd.ip != netip.MustParseAddr(host) || bnd.port == 0 {
		t.Fatalf("reply %d, bound %v", rep, bnd)
	}
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(bnd.ip, bnd.port))
	u := testnet.UDP(t, host)
	u.SetDeadline(time.Now().Add(10 * time.Second))

	send := func(u *net.UDPConn, frag byte, dst socksAddr, payload string) {
		t.Helper()
		b := appendUDPHeader(nil, dst)
		b[2] = frag
		if _, err := u.WriteTo(append(b, payload...), relay); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(u *net.UDPConn) (socksAddr, string) {
		t.Helper()
		buf := make([]byte, 2048)
		n, err := u.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		from, hlen, err := parseUDPHeader(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return from, string(buf[hlen:n])
	}
	dst1, dst2 := ipAddr(echo1.AddrPort()), ipAddr(echo2.AddrPort())
	// The first datagrams wait in the queue while the tunnel opens.
	send(u, 0, dst1, "one")
	from, got := recv(u)
	if from != dst1 || got != "one" {
		t.Fatalf("got %q from %v, want %q from %v", got, from, "one", dst1)
	}
	send(u, 0, dst2, "two")
	if from, got = recv(u); from != dst2 || got != "two" {
		t.Fatalf("got %q from %v, want %q from %v", got, from, "two", dst2)
	}

	// Dropped: a fragment, a third destination (past MaxUDPFlows), a
	// datagram from another port. The next good one is the next answer.
	send(u, 1, dst1, "fragment")
	send(u, 0, ipAddr(echo3.AddrPort()), "third")
	other := testnet.UDP(t, host)
	send(other, 0, dst1, "other port")
	if host == testnet.IPv4 {
		send(testnet.UDP(t, "127.0.0.2"), 0, dst1, "other IP")
	}
	send(u, 0, dst1, "again")
	if from, got = recv(u); from != dst1 || got != "again" {
		t.Fatalf("got %q from %v, want %q from %v", got, from, "again", dst1)
	}
	if got := e.tun.seen(); !slices.Equal(got, []string{"udp " + dst1.String(), "udp " + dst2.String()}) {
		t.Errorf("tunnels %q, want one to each echo server", got)
	}

	// Closing the control connection ends the association and its tunnels.
	s.c.Close()
	waitFor(t, "the association's tunnels to close", func() bool {
		return e.proxy.Metric(t, "masqued_tunnels_active", "kind", "udp") == 0
	})
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSOCKS5UDPIdle: an association's tunnel closes when idle, and the next
// datagram opens another. The timeout is long enough for an echo's round
// trip on a busy machine, which would otherwise be cut off.
func TestSOCKS5UDPIdle(t *testing.T) {
	e := start(t, testnet.IPv4, true, func(e *env) { e.socks.UDPIdleTimeout = 500 * time.Millisecond })
	echo := testnet.UDPEcho(t, testnet.IPv4)
	s := dialSOCKS(t, e.socksAddr)
	_, bnd := s.request(cmdUDPAssociate, socksAddr{ip: netip.IPv4Unspecified()})
	u := testnet.UDP(t, testnet.IPv4)
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(bnd.ip, bnd.port))
	dst := ipAddr(echo.AddrPort())
	for i := range 2 {
		if _, err := u.WriteTo(append(appendUDPHeader(nil, dst), "ping"...), relay); err != nil {
			t.Fatal(err)
		}
		u.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := u.Read(make([]byte, 100)); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		waitFor(t, "the idle tunnel to close", func() bool {
			return e.proxy.Metric(t, "masqued_tunnels_active", "kind", "udp") == 0
		})
	}
	// Each ping after the idle timeout opened a new tunnel.
	if got := len(e.tun.seen()); got != 2 {
		t.Errorf("%d tunnels, want 2", got)
	}
}

func TestSOCKS5BadInput(t *testing.T) {
	e := start(t, testnet.IPv4, true, func(e *env) { e.socks.HandshakeTimeout = 300 * time.Millisecond })
	echo := testnet.TCPEcho(t, testnet.IPv4)
	// A port where nothing listens: close a listener.
	lc := testnet.TCP(t, testnet.IPv4)
	refusedPort := lc.Addr().(*net.TCPAddr).Port
	lc.Close()

	greet := []byte{5, 1, 0}
	reply := func(rep byte) []byte { return appendReply(nil, rep, socksAddr{ip: netip.IPv4Unspecified()}) }
	for _, tc := range []struct {
		name string
		send []byte
		want []byte // then the end of the connection
	}{
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, []byte{0, 0x5B, 0, 0, 0, 0, 0, 0}},
		{"version 6", []byte{6, 1, 0}, nil},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), nil},
		{"no methods", []byte{5, 0}, []byte{5, 0xFF}},
		{"auth methods only", []byte{5, 2, 1, 2}, []byte{5, 0xFF}},
		{"truncated greeting", []byte{5, 3, 0}, nil},
		{"request version 4", append(greet, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80), append([]byte{5, 0}, reply(replyGeneralFailure)...)},
		{"bind", append(greet, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80), append([]byte{5, 0}, reply(replyCmdNotSupported)...)},
		{"unknown command", append(greet, 5, 9, 0, 1, 127, 0, 0, 1, 0, 80), append([]byte{5, 0}, reply(replyCmdNotSupported)...)},
		{"unknown address type", append(greet, 5, 1, 0, 9, 127, 0, 0, 1, 0, 80), append([]byte{5, 0}, reply(replyAtypNotSupported)...)},
		{"bad host name", append(greet, 5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80), append([]byte{5, 0}, reply(replyHostUnreachable)...)},
		{"empty host name", append(greet, 5, 1, 0, 3, 0, 0, 80), append([]byte{5, 0}, reply(replyHostUnreachable)...)},
		{"truncated address", append(greet, 5, 1, 0, 3, 10, 'a', 'b'), []byte{5, 0}},
		{"truncated port", append(greet, 5, 1, 0, 1, 127, 0, 0, 1, 0), []byte{5, 0}},
		{"refused", append(greet, 5, 1, 0, 1, 127, 0, 0, 1, byte(refusedPort>>8), byte(refusedPort)), append([]byte{5, 0}, reply(replyConnectionRefused)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dialSOCKS(t, e.socksAddr)
			s.write(tc.send...)
			s.expect(tc.want...)
			s.expectEOF()
		})
	}

	t.Run("oversized greeting", func(t *testing.T) {
		// 255 methods, none acceptable, and then more bytes than a
		// greeting holds: the server reads one greeting and refuses it.
		s := dialSOCKS(t, e.socksAddr)
		s.write(append([]byte{5, 255}, bytes.Repeat([]byte{2}, 300)...)...)
		s.expect(5, 0xFF)
		if _, err := io.ReadAll(s.c); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatal(err)
		}
	})

	t.Run("silent client", func(t *testing.T) {
		// The handshake timeout ends a connection that sends nothing: the
		// server closes it, not the client's 10 s deadline, which only
		// catches a server that never does (and fails expectEOF).
		s := dialSOCKS(t, e.socksAddr)
		s.expectEOF()
	})

	t.Run("a good request after", func(t *testing.T) {
		s := dialSOCKS(t, e.socksAddr)
		if rep, _ := s.request(cmdConnect, ipAddr(echo.AddrPort())); rep != replySucceeded {
			t.Fatalf("reply %d", rep)
		}
		s.write([]byte("ping")...)
		s.c.(*net.TCPConn).CloseWrite()
		if b, err := io.ReadAll(s.c); err != nil || string(b) != "ping" {
			t.Fatalf("echo %q, %v", b, err)
		}
	})
}

// isReset reports a connection reset: closing a socket with unread data
// resets it.
func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// TestSOCKS5Limits checks that the server serves MaxConns connections at
// once, and that refused and abandoned connections leave nothing behind.
func TestSOCKS5Limits(t *testing.T) {
	e := start(t, testnet.IPv4, true, func(e *env) {
		e.socks.MaxConns = 2
		e.socks.HandshakeTimeout = 2 * time.Second
	})
	// Two silent clients take the two places; a third waits, unanswered.
	a, b := dialSOCKS(t, e.socksAddr), dialSOCKS(t, e.socksAddr)
	c := dialSOCKS(t, e.socksAddr)
	c.write(5, 1, 0)
	c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.c.Read(make([]byte, 2)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection got %d bytes, %v; want no answer yet", n, err)
	}
	a.c.Close()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.expect(5, 0)
	b.c.Close()
	c.c.Close()

	// Many bad clients at once, then nothing left open.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", e.socksAddr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.Write([]byte{5, 1, 0, 5, byte(4 + i), 0, 1, 127, 0, 0, 1, 0, 80}) // unknown commands
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, conn)
		})
	}
	wg.Wait()
	waitFor(t, "the server to close every connection", func() bool {
		e.socks.g.mu.Lock()
		defer e.socks.g.mu.Unlock()
		return len(e.socks.g.conns) == 0
	})
}

// TestSOCKS5SlowDial checks that a tunnel that takes longer to open than
// the handshake may take still gets its reply.
func TestSOCKS5SlowDial(t *testing.T) {
	e := start(t, testnet.IPv4, true, func(e *env) {
		e.socks.HandshakeTimeout = 100 * time.Millisecond
		e.tun.delay = 300 * time.Millisecond
	})
	echo := testnet.TCPEcho(t, testnet.IPv4)
	s := dialSOCKS(t, e.socksAddr)
	if rep, _ := s.request(cmdConnect, ipAddr(echo.AddrPort())); rep != replySucceeded {
		t.Fatalf("reply %d", rep)
	}
}

func TestSOCKS5PolicyRefusal(t *testing.T) {
	// The production policy: no loopback targets.
	e := start(t, testnet.IPv4, false, nil)
	echo := testnet.TCPEcho(t, testnet.IPv4)
	s := dialSOCKS(t, e.socksAddr)
	if rep, _ := s.request(cmdConnect, ipAddr(echo.AddrPort())); rep != replyNotAllowed {
		t.Fatalf("reply %d, want %d (not allowed)", rep, replyNotAllowed)
	}
	s.expectEOF()
}

func TestSOCKSReply(t *testing.T) {
	refused := func(status int, ps string) error {
		return &proxyconn.ProxyError{StatusCode: status, ProxyStatus: ps}
	}
	for _, tc := range []struct {
		err  error
		want byte
	}{
		{refused(403, "masqued; error=destination_ip_prohibited"), replyNotAllowed},
		{refused(403, ""), replyNotAllowed},
		{refused(407, ""), replyNotAllowed},
		{refused(502, `masqued; error=dns_error; rcode="NXDOMAIN"`), replyHostUnreachable},
		{refused(504, "masqued; error=dns_timeout"), replyHostUnreachable},
		{refused(502, "masqued; error=destination_ip_unroutable"), replyNetworkUnreachable},
		{refused(502, "masqued; error=connection_refused"), replyConnectionRefused},
		{refused(504, "masqued; error=connection_timeout"), replyTTLExpired},
		{refused(504, ""), replyTTLExpired},
		{refused(503, "masqued; error=connection_limit_reached"), replyGeneralFailure},
		{errors.New("connection lost"), replyGeneralFailure},
		{&net.OpError{Op: "dial", Err: errTimeout{}}, replyTTLExpired},
	} {
		if got := socksReply(tc.err); got != tc.want {
			t.Errorf("socksReply(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

type errTimeout struct{}

func (errTimeout) Error() string { return "timeout" }
func (errTimeout) Timeout() bool { return true }

func TestParseAddr(t *testing.T) {
	port := binary.BigEndian.AppendUint16(nil, 443)
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" for an error
	}{
		{"ipv4", append([]byte{1, 192, 0, 2, 1}, port...), "192.0.2.1:443"},
		{"ipv6", append(append([]byte{4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), port...), "[2001:db8::1]:443"},
		{"name", append([]byte{3, 11}, append([]byte("example.com"), port...)...), "example.com:443"},
		{"ip as name", append([]byte{3, 3}, append([]byte("::1"), port...)...), "[::1]:443"},
		{"ipv4-mapped", append(append([]byte{4}, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()...), port...), "[::ffff:192.0.2.1]:443"},
		{"name with colon", append([]byte{3, 4}, append([]byte("a:80"), port...)...), ""},
		{"name with zone", append([]byte{3, 12}, append([]byte("fe80::1%eth0"), port...)...), ""},
		{"short ipv4", []byte{1, 192, 0, 2, 1, 1}, ""},
		{"empty", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, n, err := parseAddr(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("parsed %v", a)
				}
				return
			}
			if err != nil || n != len(tc.in) || a.String() != tc.want {
				t.Fatalf("got %v, %d, %v; want %s, %d", a, n, err, tc.want, len(tc.in))
			}
		})
	}
}

// TestParseUDPHeaderAllocs checks that a datagram to an IP address costs
// no allocation to parse (one to a name costs its string).
func TestParseUDPHeaderAllocs(t *testing.T) {
	v4 := appendUDPHeader(nil, socksAddr{ip: netip.MustParseAddr("192.0.2.1"), port: 53})
	v6 := appendUDPHeader(nil, socksAddr{ip: netip.MustParseAddr("2001:db8::1"), port: 53})
	if n := testing.AllocsPerRun(100, func() {
		parseUDPHeader(v4)
		parseUDPHeader(v6)
	}); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}
