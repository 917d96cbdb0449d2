package tunnel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported reports whether the kernel has UDP generic segmentation
// offload (UDP_SEGMENT, Linux 4.18) for uc.
func gsoSupported(uc *net.UDPConn) bool {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoCmsgLen is the size of a UDP_SEGMENT control message.
var gsoCmsgLen = unix.CmsgSpace(2)

// sendGSO sends b to to as packets of seg bytes (the last may be shorter)
// in one system call: the kernel cuts them, with one pass through the
// stack for all. A run longer than the kernel's 64 segments goes in parts.
func sendGSO(uc *net.UDPConn, b []byte, seg int, to netip.AddrPort) error {
	const maxSegments = 64
	var oob [32]byte // gsoCmsgLen is 24 on 64-bit Linux
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	for len(b) > 0 {
		part := b[:min(len(b), maxSegments*seg)]
		if _, _, err := uc.WriteMsgUDPAddrPort(part, oob[:gsoCmsgLen], to); err != nil {
			return err
		}
		b = b[len(part):]
	}
	return nil
}
