package h3proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

// bigReplyEcho is a UDP server that answers "big" with a 4000-byte packet,
// larger than any QUIC DATAGRAM frame on a 1500-byte path, and echoes
// everything else.
func bigReplyEcho(t *testing.T) *net.UDPAddr {
	t.Helper()
	c := testnet.UDP(t, testnet.IPv4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		big := bytes.Repeat([]byte{'B'}, 4000)
		for {
			n, addr, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			reply := buf[:n]
			if string(reply) == "big" {
				reply = big
			}
			_, _ = c.WriteToUDPAddrPort(reply, addr)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr)
}

// TestOversizedDatagramDropped: a reply too large for the client's QUIC
// connection is dropped and counted, and the tunnel carries the next one.
func TestOversizedDatagramDropped(t *testing.T) {
	target := bigReplyEcho(t)
	p := startProxy(t, testnet.IPv4)
	c := p.dial(t, h3.Config{})
	u, err := c.ListenUDP(testContext(t), target.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.WriteTo([]byte("big"), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a too_large drop", func() bool {
		return p.metric(t, "masqued_datagrams_dropped_total", "reason", "too_large") == 1
	})
	for i := range 3 { // the tunnel lives on after the drop
		ping(t, u, "after "+strconv.Itoa(i))
	}
	// The client side drops what it cannot send, too, and lives on.
	if _, err := u.WriteTo(bytes.Repeat([]byte{'x'}, 4000), nil); err != nil {
		t.Fatalf("oversized write: %v", err)
	}
	if u.Dropped() != 1 {
		t.Errorf("client Dropped() = %d, want 1", u.Dropped())
	}
}

// TestManyTunnelsOneConnection runs 100 concurrent tunnels, half TCP and
// half UDP, over one QUIC connection, and checks they all close.
func TestManyTunnelsOneConnection(t *testing.T) {
	const n = 100
	echoTCP := testnet.TCPEcho(t, testnet.IPv4)
	echoUDP := testnet.UDPEcho(t, testnet.IPv4)
	p := startProxy(t, testnet.IPv4)
	c := p.dial(t, h3.Config{})
	ctx := testContext(t)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			msg := []byte("tunnel " + strconv.Itoa(i))
			buf := make([]byte, 64)
			if i%2 == 0 {
				conn, err := c.DialTCP(ctx, echoTCP.String())
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(msg); err != nil {
					errs <- err
					return
				}
				m, err := io.ReadFull(conn, buf[:len(msg)])
				if err != nil || string(buf[:m]) != string(msg) {
					errs <- fmt.Errorf("tcp tunnel %d: read %q, %v", i, buf[:m], err)
				}
				return
			}
			u, err := c.ListenUDP(ctx, echoUDP.String())
			if err != nil {
				errs <- err
				return
			}
			defer u.Close()
			for attempt := 0; ; attempt++ { // UDP: retry a lost packet
				u.WriteTo(msg, nil)
				u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				m, _, err := u.ReadFrom(buf)
				if err == nil && string(buf[:m]) == string(msg) {
					return
				}
				if attempt == 10 {
					errs <- fmt.Errorf("udp tunnel %d: no echo: %v", i, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "all tunnels closed", func() bool { return p.metric(t, "masqued_tunnels_active") == 0 })
	if got := p.metric(t, "masqued_tunnels_total"); got != n {
		t.Errorf("masqued_tunnels_total = %v, want %d", got, n)
	}
}
