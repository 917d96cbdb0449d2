//go:build !linux

package tunnel

import (
	"errors"
	"net"
	"net/netip"
)

// gsoSupported: UDP_SEGMENT is only used on Linux.
func gsoSupported(*net.UDPConn) bool { return false }

func sendGSO(*net.UDPConn, []byte, int, netip.AddrPort) error {
	return errors.ErrUnsupported
}
