package tunnel

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindOptions prepares a socket that is about to be bound to a pinned source
// address. noPort (TCP) defers choosing the local port to connect
// (IP_BIND_ADDRESS_NO_PORT), so that many connections from one address do not
// exhaust the ephemeral ports of bind; freeBind allows binding an IPv6 address
// that is routed to the host but not configured on it (IPV6_FREEBIND).
func bindOptions(rc syscall.RawConn, noPort, freeBind bool) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if noPort {
			serr = os.NewSyscallError("setsockopt IP_BIND_ADDRESS_NO_PORT", unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1))
		}
		if freeBind && serr == nil {
			serr = os.NewSyscallError("setsockopt IPV6_FREEBIND", unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1))
		}
	})
	return errors.Join(err, serr)
}
