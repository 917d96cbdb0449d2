//go:build !linux

package tunnel

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// batchReader reads a socket in batches where x/net can (it allocates a
// source address per packet).
type batchReader struct{ pc *ipv4.PacketConn }

func newBatchReader(uc *net.UDPConn) *batchReader { return &batchReader{ipv4.NewPacketConn(uc)} }

func (r *batchReader) read(ms []ipv4.Message) (int, error) { return r.pc.ReadBatch(ms, 0) }

func (r *batchReader) source(ms []ipv4.Message, i int) netip.AddrPort {
	ua, _ := ms[i].Addr.(*net.UDPAddr)
	if ua == nil {
		return netip.AddrPort{}
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (r *batchReader) addr(ms []ipv4.Message, i int) *net.UDPAddr {
	ua, _ := ms[i].Addr.(*net.UDPAddr)
	return ua
}
