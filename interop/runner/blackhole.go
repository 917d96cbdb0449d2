package runner

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
)

// blackholedFront listens on one port number for TCP, relayed to target,
// and UDP, read and dropped; stop ends both and waits for the relays.
func blackholedFront(target netip.AddrPort) (netip.AddrPort, func(), error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return netip.AddrPort{}, nil, err
		}
		addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		l, err := net.Listen("tcp", addr.String())
		if err != nil {
			pc.Close()
			if try < 10 {
				continue
			}
			return netip.AddrPort{}, nil, err
		}
		var wg sync.WaitGroup
		var mu sync.Mutex // guards conns and stopped
		conns := map[net.Conn]bool{}
		stopped := false
		track := func(c net.Conn, add bool) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case add && stopped: // accepted as stop ran: close it now
				c.Close()
			case add:
				conns[c] = true
			default:
				delete(conns, c)
			}
		}
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		})
		wg.Go(func() {
			for {
				in, err := l.Accept()
				if err != nil {
					return
				}
				out, err := net.Dial("tcp", target.String())
				if err != nil {
					in.Close()
					continue
				}
				track(in, true)
				track(out, true)
				for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
					wg.Go(func() {
						io.Copy(pair[0], pair[1])
						pair[0].Close()
						pair[1].Close()
						track(pair[0], false)
					})
				}
			}
		})
		stop := func() {
			pc.Close()
			l.Close()
			mu.Lock()
			stopped = true
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		}
		return addr, stop, nil
	}
}
