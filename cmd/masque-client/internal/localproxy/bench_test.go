package localproxy

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
)

// benchDownload is the bytes each benchmark iteration fetches.
const benchDownload = 16 << 20

// source serves benchDownload zero bytes to every connection on 127.0.0.1
// until the benchmark ends.
func source(b *testing.B) netip.AddrPort {
	l := testnet.TCP(b, testnet.IPv4)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for n := 0; n < benchDownload; n += len(buf) {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func drain(b *testing.B, c net.Conn) {
	c.SetDeadline(time.Now().Add(time.Minute))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != benchDownload {
		b.Fatalf("%d bytes, %v", n, err)
	}
}

// BenchmarkTCPDirect downloads through a CONNECT tunnel of the client
// itself: the baseline for BenchmarkTCPViaSOCKS5.
func BenchmarkTCPDirect(b *testing.B) {
	e := start(b, testnet.IPv4, true, nil)
	src := source(b)
	b.SetBytes(benchDownload)
	for b.Loop() {
		c, err := e.tun.DialTCP(b.Context(), src.String())
		if err != nil {
			b.Fatal(err)
		}
		drain(b, c)
		c.Close()
	}
}

// BenchmarkTCPViaSOCKS5 downloads through the SOCKS5 server and the same
// kind of tunnel.
func BenchmarkTCPViaSOCKS5(b *testing.B) {
	e := start(b, testnet.IPv4, true, nil)
	src := source(b)
	b.SetBytes(benchDownload)
	for b.Loop() {
		c, err := net.Dial("tcp", e.socksAddr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(append([]byte{5, 1, 0}, appendReply(nil, cmdConnect, ipAddr(src))...))
		var reply [2 + 10]byte
		if _, err := io.ReadFull(c, reply[:]); err != nil || reply[3] != replySucceeded {
			b.Fatalf("reply % x, %v", reply, err)
		}
		drain(b, c)
		c.Close()
	}
}

// BenchmarkUDPViaSOCKS5 sends 1200-byte datagrams to an echo server through
// a UDP association, one at a time.
func BenchmarkUDPViaSOCKS5(b *testing.B) {
	e := start(b, testnet.IPv4, true, nil)
	echo := testnet.UDPEcho(b, testnet.IPv4)
	c, err := net.Dial("tcp", e.socksAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Write(append([]byte{5, 1, 0}, appendReply(nil, cmdUDPAssociate, socksAddr{ip: netip.IPv4Unspecified()})...))
	var reply [2 + 10]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil || reply[3] != replySucceeded {
		b.Fatalf("reply % x, %v", reply, err)
	}
	bnd, _, _ := parseAddr(reply[5:])
	u := testnet.UDP(b, testnet.IPv4)
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(bnd.ip, bnd.port))
	pkt := append(appendUDPHeader(nil, ipAddr(echo.AddrPort())), make([]byte, 1200)...)
	buf := make([]byte, 2048)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		for {
			u.WriteTo(pkt, relay)
			u.SetReadDeadline(time.Now().Add(time.Second)) // a lost datagram is sent again
			if n, err := u.Read(buf); err == nil && n == len(pkt) {
				break
			}
		}
	}
}
