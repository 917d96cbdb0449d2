package testnet

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// ClosedUDP returns an address on host where no UDP socket listens.
func ClosedUDP(t testing.TB, host string) string {
	t.Helper()
	c := UDP(t, host)
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// SkipWithoutICMP skips the test unless this host reports ICMP port
// unreachable from addr, where nothing may listen on UDP, to a connected
// UDP socket, as Linux does on loopback: tests of what a UDP tunnel does
// with a refusing target need it.
func SkipWithoutICMP(t testing.TB, addr string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	for range 50 {
		if _, err := c.Write([]byte("anyone?")); errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(buf); errors.Is(err, syscall.ECONNREFUSED) {
			return
		} else if err == nil {
			t.Fatalf("something answers on %s", addr)
		}
	}
	t.Skip("no ICMP port unreachable reported on this host's loopback")
}

// ExpectRefused sends a packet through the UDP tunnel pc to a target where
// nothing listens, and checks that ReadFrom, then WriteTo, fail with an
// error of type E (the client's refusal, which this package does not
// import) for which ok holds.
func ExpectRefused[E error](t testing.TB, pc net.PacketConn, ok func(E) bool) {
	t.Helper()
	if _, err := pc.WriteTo([]byte("anyone?"), nil); err != nil {
		t.Fatal(err)
	}
	// The refusal takes a round trip on loopback; the deadline only
	// catches a tunnel that is never ended.
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := pc.ReadFrom(make([]byte, 100))
	var refused E
	if !errors.As(err, &refused) || !ok(refused) {
		t.Fatalf("ReadFrom = %v, want a %T", err, refused)
	}
	if _, err := pc.WriteTo([]byte("still there?"), nil); !errors.As(err, &refused) {
		t.Errorf("WriteTo after the refusal = %v, want a %T", err, refused)
	}
}
