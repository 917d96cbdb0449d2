package proxyconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
)

// tcpStream is a UDP tunnel's stream on a real loopback TCP connection, as
// an HTTP/1.1 tunnel has it; a reset is the refusal, as from masqued's
// HTTP/1.1 front.
type tcpStream struct{ *net.TCPConn }

func (s tcpStream) Refused(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// echoTunnel returns a capsule-mode UDPConn whose stream reaches a TCP echo
// server: every capsule it sends comes back, as from a proxy whose target
// echoes. It is closed at cleanup.
func echoTunnel(t *testing.T) *UDPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, testnet.TCPEcho(t, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	u := NewUDPConn(tcpStream{c}, nil, c.LocalAddr(), AddrOf("192.0.2.1:443", "udp"))
	u.Start()
	t.Cleanup(func() { u.Close() })
	// A hang bound for the test's reads: on loopback an echo takes well
	// under a millisecond.
	if err := u.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return u
}

// roundTrip sends p through u and reads it back into buf.
func roundTrip(t *testing.T, u *UDPConn, p, buf []byte) []byte {
	t.Helper()
	if _, err := u.WriteTo(p, nil); err != nil {
		t.Fatal(err)
	}
	n, addr, err := u.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if addr != u.RemoteAddr() {
		t.Fatalf("ReadFrom's address %v, want the target %v", addr, u.RemoteAddr())
	}
	return buf[:n]
}

// TestUDPConnAllocs: a packet sent and received in capsules costs no
// allocation, in WriteTo, in the pump or in ReadFrom.
func TestUDPConnAllocs(t *testing.T) {
	u := echoTunnel(t)
	p, buf := bytes.Repeat([]byte{'p'}, 1200), make([]byte, 2048)
	if got := roundTrip(t, u, p, buf); !bytes.Equal(got, p) {
		t.Fatalf("echo of %d bytes came back as %d", len(p), len(got))
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(1000, func() { roundTrip(t, u, p, buf) }); n != 0 {
		t.Errorf("%v allocations per packet sent and received", n)
	}
}

// TestUDPConnPayloadSizes: the largest UDP payload goes through; one byte
// more fails as on a UDP socket, with EMSGSIZE, and the tunnel lives on.
func TestUDPConnPayloadSizes(t *testing.T) {
	u := echoTunnel(t)
	buf := make([]byte, masque.MaxUDPPayload+1)
	largest := bytes.Repeat([]byte{'L'}, masque.MaxUDPPayload)
	if got := roundTrip(t, u, largest, buf); !bytes.Equal(got, largest) {
		t.Fatalf("the largest payload came back as %d bytes", len(got))
	}
	n, err := u.WriteTo(buf, nil)
	if n != 0 || !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("WriteTo of %d bytes = %d, %v; want 0 and EMSGSIZE", len(buf), n, err)
	}
	if got := roundTrip(t, u, []byte("after"), buf); string(got) != "after" {
		t.Fatalf("after the refused write: %q", got)
	}
	if d := u.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d: a refused write is no drop", d)
	}
}

// TestUDPConnDeliver: datagrams from the transport's datagram channel join
// the capsules' queue; another Context ID is dropped and counted.
func TestUDPConnDeliver(t *testing.T) {
	u := echoTunnel(t)
	u.Deliver([]byte{0x01, 'x'}) // Context ID 1: not a UDP payload
	u.Deliver([]byte{0x00, 'd', 'g'})
	buf := make([]byte, 64)
	n, _, err := u.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "dg" {
		t.Fatalf("ReadFrom = %q, %v; want the delivered datagram", buf[:n], err)
	}
	if d := u.Dropped(); d != 1 {
		t.Errorf("Dropped() = %d, want 1", d)
	}
}

// TestUDPConnDeadlineAndClose: a past deadline times ReadFrom out and the
// conn stays usable; Close ends a blocked ReadFrom with net.ErrClosed, and
// WriteTo after it fails the same way.
func TestUDPConnDeadlineAndClose(t *testing.T) {
	u := echoTunnel(t)
	if err := u.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.ReadFrom(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past its deadline = %v", err)
	}
	if err := u.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, u, []byte("again"), make([]byte, 64)); string(got) != "again" {
		t.Fatalf("after the deadline: %q", got)
	}
	read := make(chan error, 1)
	go func() { _, _, err := u.ReadFrom(make([]byte, 64)); read <- err }()
	u.Close()
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second): // a hang bound: Close unblocks it at once
		t.Fatal("Close did not end a blocked ReadFrom")
	}
	if _, err := u.WriteTo([]byte("late"), nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close = %v, want net.ErrClosed", err)
	}
}

// lateEOFStream ends as a refused tunnel's HTTP/2 stream does: the
// transport closes the request body first, so a write fails with a closed
// pipe, and only then does the reader see the response's clean end, which
// is the refusal.
type lateEOFStream struct {
	eof  chan struct{} // closed by the first failed Write
	once sync.Once
}

func (s *lateEOFStream) Read([]byte) (int, error) { <-s.eof; return 0, io.EOF }
func (s *lateEOFStream) Write([]byte) (int, error) {
	s.once.Do(func() { close(s.eof) })
	return 0, io.ErrClosedPipe
}
func (s *lateEOFStream) Close() error           { s.once.Do(func() { close(s.eof) }); return nil }
func (s *lateEOFStream) Refused(err error) bool { return errors.Is(err, io.EOF) }

// TestUDPConnRefusalAfterFailedWrite: a write that fails a moment before
// the reader learns that the target refused reports the refusal, not the
// closed pipe (a QUIC connection inside would report silence instead).
func TestUDPConnRefusalAfterFailedWrite(t *testing.T) {
	u := NewUDPConn(&lateEOFStream{eof: make(chan struct{})}, nil, nil, AddrOf("192.0.2.1:443", "udp"))
	u.Start()
	defer u.Close()
	_, err := u.WriteTo([]byte("hello"), nil)
	var refused *TargetRefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("WriteTo: %v, want a *TargetRefusedError", err)
	}
}
