package testnet

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// Blackhole returns a TCP address on host's loopback address (port 0 = any
// free port) that drops connection attempts without answering, as a
// black-holed route does: a listener whose accept queue is full. Linux
// drops a SYN to such a listener rather than resetting it (unless
// net.ipv4.tcp_abort_on_overflow is set, in which case the test is skipped),
// so the client retransmits into silence. No packet leaves loopback.
func Blackhole(t testing.TB, host string, port int) *net.TCPAddr {
	t.Helper()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_abort_on_overflow"); err != nil || string(b) != "0\n" {
		t.Skipf("tcp_abort_on_overflow is not 0 (%q, %v): a full listener would reset", b, err)
	}
	ip := netip.MustParseAddr(host)
	var family int
	var sa syscall.Sockaddr
	if ip.Is4() {
		family, sa = syscall.AF_INET, &syscall.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blackhole")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection
		t.Fatal(err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IP(ip.AsSlice())}
	switch sa := bound.(type) {
	case *syscall.SockaddrInet4:
		addr.Port = sa.Port
	case *syscall.SockaddrInet6:
		addr.Port = sa.Port
	}
	// Fill the queue: this connection is never accepted, and every attempt
	// after it goes unanswered.
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}

// WhoAmI starts a TCP server on host that answers each connection with the
// address it came from ("IP:PORT\n") and closes it: an origin that shows
// which egress address a tunnel left from.
func WhoAmI(t testing.TB, host string) *net.TCPAddr {
	t.Helper()
	return tcpServer(t, host, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte(c.RemoteAddr().String() + "\n"))
	})
}

// UDPWhoAmI starts a UDP server on host that answers every packet with the
// address it came from ("IP:PORT").
func UDPWhoAmI(t testing.TB, host string) *net.UDPAddr {
	t.Helper()
	return udpServer(t, host, 2048, func(_ []byte, from netip.AddrPort) []byte { return []byte(from.String()) })
}

// ReadWhoAmI reads WhoAmI's answer from c: the address the origin saw.
func ReadWhoAmI(t testing.TB, c net.Conn) netip.AddrPort {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the origin's answer: %v", err)
	}
	ap, err := netip.ParseAddrPort(line[:len(line)-1])
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
