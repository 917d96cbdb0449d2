package udpgro

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OOBLen is room enough for the control message of a GRO read: the
// UDP_GRO message, an int.
const OOBLen = 64

// Enable turns UDP_GRO on for the socket fd. A kernel without it refuses,
// and the socket then reads one packet per call, as before.
func Enable(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
}

// SegmentSize returns the segment size of a coalesced read, from the
// UDP_GRO message in its control messages oob, or 0 if there is none (the
// read holds one packet). Any other message is skipped.
func SegmentSize(oob []byte) int {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		switch {
		case err != nil:
			return 0
		case h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			return int(int32(binary.NativeEndian.Uint32(data)))
		}
		oob = rest
	}
	return 0
}

// Source returns the source address that a raw recvmsg or recvmmsg wrote
// into name (room for either family), as ReadFromUDPAddrPort would but for
// an IPv6 address's zone, and without an allocation.
func Source(name *unix.RawSockaddrInet6) netip.AddrPort {
	switch name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), networkOrder(&sa.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(name.Addr), networkOrder(&name.Port))
	}
	return netip.AddrPort{}
}

// networkOrder reads a sockaddr's port, which the kernel keeps in network
// byte order.
func networkOrder(port *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(port))[:])
}
