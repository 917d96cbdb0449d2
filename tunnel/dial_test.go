package tunnel_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/tunnel"
)

func addrPort(a *net.TCPAddr) netip.AddrPort { return a.AddrPort() }

// TestHappyEyeballsFallback: the IPv6 address black-holes, the IPv4 one
// answers; the dialer falls back after the attempt delay and leaves from the
// IPv4 source it was given, not from the host's default. It does so long
// before the black hole could time out: the context's 10 s, forty times the
// 250 ms delay, only catches a dialer that never falls back.
func TestHappyEyeballsFallback(t *testing.T) {
	origin := testnet.WhoAmI(t, testnet.IPv4)
	hole := testnet.Blackhole(t, testnet.IPv6, origin.Port)
	src := tunnel.Source{IPv4: netip.MustParseAddr("127.0.0.5"), IPv6: netip.MustParseAddr("::1")}
	var d tunnel.NetDialer
	start := time.Now()
	c, err := d.DialFrom(testnet.Context(t, 10*time.Second), "tcp", []netip.AddrPort{addrPort(hole), addrPort(origin)}, src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("connected over IPv4 after %v", time.Since(start))
	if seen := testnet.ReadWhoAmI(t, c); seen.Addr() != src.IPv4 {
		t.Errorf("origin saw %s, want the pinned %s", seen, src.IPv4)
	}
}

// TestHappyEyeballsPrefersIPv6: both answer; IPv6 goes first and wins, from
// its own source.
func TestHappyEyeballsPrefersIPv6(t *testing.T) {
	v4 := testnet.WhoAmI(t, testnet.IPv4)
	v6 := testnet.WhoAmI(t, testnet.IPv6)
	src := tunnel.Source{IPv4: netip.MustParseAddr("127.0.0.5"), IPv6: netip.MustParseAddr("::1")}
	var d tunnel.NetDialer
	c, err := d.DialFrom(testnet.Context(t, 10*time.Second), "tcp", []netip.AddrPort{addrPort(v4), addrPort(v6)}, src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if seen := testnet.ReadWhoAmI(t, c); seen.Addr() != src.IPv6 {
		t.Errorf("origin saw %s, want %s over IPv6", seen, src.IPv6)
	}
}

// TestHappyEyeballsFailureStartsNext: a refused attempt starts the next one
// at once, without waiting for the attempt delay: with an hour's delay, only
// a dialer that moves on at the refusal connects before the context's 10 s.
func TestHappyEyeballsFailureStartsNext(t *testing.T) {
	closed := testnet.TCP(t, testnet.IPv6)
	refused := addrPort(closed.Addr().(*net.TCPAddr))
	closed.Close()
	origin := testnet.WhoAmI(t, testnet.IPv4)
	d := tunnel.NetDialer{AttemptDelay: time.Hour}
	c, err := d.DialFrom(testnet.Context(t, 10*time.Second), "tcp", []netip.AddrPort{refused, addrPort(origin)}, tunnel.Source{})
	if err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
	c.Close()
	// All refused: the errors say so.
	_, err = d.DialFrom(testnet.Context(t, 10*time.Second), "tcp", []netip.AddrPort{refused}, tunnel.Source{})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v, want connection refused", err)
	}
}

// TestHappyEyeballsDeadline: with only black holes, the dialer gives up when
// the context does, and leaves no attempt behind (goleak checks).
func TestHappyEyeballsDeadline(t *testing.T) {
	hole4 := testnet.Blackhole(t, testnet.IPv4, 0)
	hole6 := testnet.Blackhole(t, testnet.IPv6, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	var d tunnel.NetDialer
	_, err := d.DialFrom(ctx, "tcp", []netip.AddrPort{addrPort(hole6), addrPort(hole4)}, tunnel.Source{})
	if status, e := masque.StatusOf(err); status != 504 || e.Kind != masque.StatusConnectionTimeout {
		t.Errorf("%d %s (%v), want 504 connection_timeout", status, e.Kind, err)
	}
}

// TestDialUDPFromSource: UDP tunnels leave from the pinned address too.
func TestDialUDPFromSource(t *testing.T) {
	origin := testnet.UDPWhoAmI(t, testnet.IPv4)
	src := tunnel.Source{IPv4: netip.MustParseAddr("127.0.0.6")}
	var d tunnel.NetDialer
	c, err := d.DialFrom(testnet.Context(t, 10*time.Second), "udp", []netip.AddrPort{origin.AddrPort()}, src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("who")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if seen := netip.MustParseAddrPort(string(buf[:n])); seen.Addr() != src.IPv4 {
		t.Errorf("origin saw %s, want %s", seen, src.IPv4)
	}
}

// detailDialer dials like NetDialer and always has a note for the client.
type detailDialer struct{ tunnel.NetDialer }

func (d *detailDialer) DialDetail(ctx context.Context, network string, addrs []netip.AddrPort, r *http.Request) (net.Conn, string, error) {
	c, err := d.Dial(ctx, network, addrs, r)
	return c, `hint "x" ignored`, err
}

// TestDetailDialerHeader: a DetailDialer's note reaches the success response
// as a Proxy-Status with details, for any front to send.
func TestDetailDialerHeader(t *testing.T) {
	origin := testnet.TCPEcho(t, testnet.IPv4)
	for _, tc := range []struct {
		d    tunnel.Dialer
		want string
	}{
		{&detailDialer{}, `masqued; details="hint \"x\" ignored"`},
		{&tunnel.NetDialer{}, ""},
	} {
		p := newProxy(t, tunnel.Config{Dialer: tc.d, Policy: tunnel.Policy{AllowPrivate: true}})
		f := p.Front("test")
		req := httptest.NewRequest(http.MethodConnect, "/", nil)
		req.Host = origin.String()
		kind, target, err := f.ParseRequest(req, "")
		if err != nil {
			t.Fatal(err)
		}
		tun, err := f.Open(testnet.Context(t, 10*time.Second), req, kind, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := tun.Header().Get("Proxy-Status"); got != tc.want {
			t.Errorf("%T: Proxy-Status %q, want %q", tc.d, got, tc.want)
		}
		tun.Close()
	}
}
