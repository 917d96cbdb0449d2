package proxyconn

import (
	"sync"

	"github.com/masqued/masqued/masque/capsule"
)

// Packet buffers for the clients' UDP tunnels, pooled so that sending or
// receiving a packet allocates nothing and an idle tunnel holds no buffer.
// Two sizes: nearly every packet fits a small one (a QUIC packet is at most
// 1500 bytes on most paths); the large one takes any UDP payload with its
// capsule or datagram framing.
const (
	smallPacket = 2 << 10
	largePacket = 64<<10 + 64
)

var (
	smallPackets = sync.Pool{New: func() any { b := make([]byte, smallPacket); return &b }}
	largePackets = sync.Pool{New: func() any { b := make([]byte, largePacket); return &b }}
)

// GetPacket returns a buffer of length n, at most 64 KiB + 64; give it back
// with PutPacket.
func GetPacket(n int) *[]byte {
	pool := &smallPackets
	if n > smallPacket {
		pool = &largePackets
	}
	b := pool.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// PutPacket returns a buffer from GetPacket to its pool.
func PutPacket(b *[]byte) {
	switch cap(*b) {
	case smallPacket:
		smallPackets.Put(b)
	case largePacket:
		largePackets.Put(b)
	}
}

// UDPHeadroom is where a UDPDatagram's HTTP Datagram payload starts: the
// bytes before it are room to frame it in place (a capsule header, or a
// quarter stream ID).
const UDPHeadroom = capsule.MaxHeaderLen

// UDPDatagram returns a pooled buffer holding UDP payload p as an HTTP
// Datagram payload, Context ID 0 (RFC 9298 §5) first, at UDPHeadroom. Give
// it back with PutPacket.
func UDPDatagram(p []byte) *[]byte {
	b := GetPacket(UDPHeadroom + 1 + len(p))
	(*b)[UDPHeadroom] = capsule.ContextUDP
	copy((*b)[UDPHeadroom+1:], p)
	return b
}
