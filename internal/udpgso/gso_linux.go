package udpgso

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Supported reports whether the kernel has UDP_SEGMENT for uc.
func Supported(uc *net.UDPConn) bool {
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

// cmsgLen is the size of a UDP_SEGMENT control message.
var cmsgLen = unix.CmsgSpace(2)

// appendCmsg appends a UDP_SEGMENT control message for segments of seg
// bytes to oob.
func appendCmsg(oob []byte, seg int) []byte {
	n := len(oob)
	oob = append(oob, make([]byte, cmsgLen)...) // no allocation within capacity
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[n+unix.CmsgLen(0):], uint16(seg))
	return oob
}

// maxSegments is the kernel's limit on the segments of one send
// (UDP_MAX_SEGMENTS).
const maxSegments = 64

// Send sends b to to as packets of seg bytes (the last may be shorter), in
// one system call where it can. A run longer than the kernel takes goes in
// parts.
func Send(uc *net.UDPConn, b []byte, seg int, to netip.AddrPort) error {
	var oob [32]byte // cmsgLen is 24 on 64-bit Linux
	cm := appendCmsg(oob[:0], seg)
	for len(b) > 0 {
		part := b[:min(len(b), maxSegments*seg, maxRun/seg*seg)]
		if _, _, err := uc.WriteMsgUDPAddrPort(part, cm, to); err != nil {
			return err
		}
		b = b[len(part):]
	}
	return nil
}

// maxRun bounds the bytes of one send: a UDP datagram's length field.
const maxRun = 65507

// Refused reports whether err is the kernel refusing a UDP_SEGMENT send
// that it would take as single packets: EIO from a device without checksum
// offload, EINVAL from a kernel that cannot segment this socket.
func Refused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL)
}

// appendOther appends the control messages in oob to dst but for a
// UDP_SEGMENT one, and returns the segment size that one gave (0 if none).
// quic-go puts one on every packet it sends where the kernel has GSO, a run
// of one included.
func appendOther(dst, oob []byte) ([]byte, int) {
	seg := 0
	for len(oob) > 0 {
		h, data, next, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return append(dst, oob...), seg
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_SEGMENT && len(data) >= 2 {
			seg = int(binary.NativeEndian.Uint16(data))
		} else {
			dst = append(dst, oob[:len(oob)-len(next)]...)
		}
		oob = next
	}
	return dst, seg
}
