//go:build !linux

package udpgso

import (
	"errors"
	"net"
	"net/netip"
)

// Supported: UDP_SEGMENT is only used on Linux.
func Supported(*net.UDPConn) bool { return false }

// Send is never called where Supported is false.
func Send(*net.UDPConn, []byte, int, netip.AddrPort) error { return errors.ErrUnsupported }

func appendCmsg(oob []byte, _ int) []byte { return oob }

func appendOther(dst, oob []byte) ([]byte, int) { return append(dst, oob...), 0 }

// Refused: see Send.
func Refused(error) bool { return false }

const maxSegments, maxRun = 1, 65507
