package udpgro

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSegmentSize reads a real GSO burst over loopback with UDP_GRO on: the
// control message gives the segment size, and a read of one packet none.
func TestSegmentSize(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rc, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = Enable(fd) })
	if serr != nil {
		t.Skipf("no UDP_GRO on this kernel: %v", serr)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const seg = 1000
	burst := bytes.Repeat([]byte{7}, 3*seg)
	wc, err := tx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
	if serr != nil {
		t.Skipf("no UDP_SEGMENT on this kernel: %v", serr)
	}
	if _, err := tx.Write(burst); err != nil { // one send, three packets
		t.Fatal(err)
	}
	buf, cm := make([]byte, 64<<10), make([]byte, OOBLen)
	n, oobn, _, _, err := rx.ReadMsgUDP(buf, cm)
	if err != nil {
		t.Fatal(err)
	}
	if got := SegmentSize(cm[:oobn]); n != len(burst) || got != seg {
		t.Fatalf("read %d bytes with segment size %d, want %d and %d", n, got, len(burst), seg)
	}
	tx.Write([]byte("one")) // shorter than a segment: one packet
	n, oobn, _, _, err = rx.ReadMsgUDP(buf, cm)
	if err != nil || n != 3 || SegmentSize(cm[:oobn]) != 0 {
		t.Fatalf("one packet: %d bytes, segment size %d, %v", n, SegmentSize(cm[:oobn]), err)
	}
	if SegmentSize([]byte{1, 2, 3}) != 0 {
		t.Error("a malformed control message has a segment size")
	}
}
