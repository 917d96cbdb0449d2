package udpgro

import (
	"encoding/binary"

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
