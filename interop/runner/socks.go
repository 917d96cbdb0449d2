package runner

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// socksUDP sends packets through a SOCKS5 proxy's UDP ASSOCIATE (RFC 1928
// §7) to the echo origin and checks that each comes back.
func socksUDP(ctx context.Context, socks string, echo netip.AddrPort, cell string, n int) error {
	var d net.Dialer
	ctl, err := d.DialContext(ctx, "tcp", socks)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if dl, ok := ctx.Deadline(); ok {
		ctl.SetDeadline(dl)
	}
	// No authentication; then UDP ASSOCIATE from any address.
	if _, err := ctl.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return err
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(ctl, reply); err != nil {
		return fmt.Errorf("SOCKS5 UDP ASSOCIATE: %w", err)
	}
	if reply[1] != 0 || reply[3] != 0 || reply[5] != 1 {
		return fmt.Errorf("SOCKS5 UDP ASSOCIATE: reply % x", reply)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:12]))
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		return err
	}
	defer uc.Close()
	header := append([]byte{0, 0, 0, 1}, echo.Addr().AsSlice()...)
	header = binary.BigEndian.AppendUint16(header, echo.Port())
	buf := make([]byte, 2048)
	for i := range n {
		payload := fmt.Sprintf("%s packet %d", cell, i)
		var got string
		// UDP may lose a packet, even on loopback while a tunnel opens.
		for try := 0; try < 5 && got != payload; try++ {
			if _, err := uc.Write(append(header, payload...)); err != nil {
				return err
			}
			uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, err := uc.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			if m > len(header) {
				got = string(buf[len(header):m])
			}
		}
		if got != payload {
			return fmt.Errorf("packet %d did not come back from the echo origin", i)
		}
	}
	return nil
}
