package udpgso

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// SendRun sends b to to as packets of seg bytes (the last may be shorter):
// in one UDP_SEGMENT send while gso is set, else one send each. A kernel
// that refuses the segmented send clears gso for good, and the run goes out
// one packet per send. On a connected socket, to is the zero AddrPort.
func SendRun(uc *net.UDPConn, b []byte, seg int, to netip.AddrPort, gso *atomic.Bool) error {
	if len(b) > seg && gso.Load() {
		err := Send(uc, b, seg, to)
		if !Refused(err) {
			return err
		}
		gso.Store(false) // the device cannot segment
	}
	for o := 0; o < len(b); o += seg {
		if _, _, err := uc.WriteMsgUDPAddrPort(b[o:min(o+seg, len(b))], nil, to); err != nil {
			return err
		}
	}
	return nil
}
