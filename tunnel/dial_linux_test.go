package tunnel_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// TestBindNoPort: a TCP socket bound to a pinned source defers its port to
// connect (IP_BIND_ADDRESS_NO_PORT), so that many connections from one
// egress address to different origins are not limited by bind's port
// choice; an unpinned one is left alone.
func TestBindNoPort(t *testing.T) {
	origin := testnet.WhoAmI(t, testnet.IPv4)
	var d tunnel.NetDialer
	for _, tc := range []struct {
		src  tunnel.Source
		want int
	}{
		{tunnel.Source{IPv4: netip.MustParseAddr("127.0.0.7")}, 1},
		{tunnel.Source{}, 0},
	} {
		c, err := d.DialFrom(testnet.Context(t, 10*time.Second), "tcp", []netip.AddrPort{origin.AddrPort()}, tc.src)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := rc.Control(func(fd uintptr) {
			v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if seen := testnet.ReadWhoAmI(t, c); tc.src.IPv4.IsValid() && seen.Addr() != tc.src.IPv4 {
			t.Errorf("origin saw %s, want %s", seen, tc.src.IPv4)
		}
		c.Close()
		if v != tc.want {
			t.Errorf("source %+v: IP_BIND_ADDRESS_NO_PORT = %d, want %d", tc.src, v, tc.want)
		}
	}
}
