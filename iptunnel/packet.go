package iptunnel

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the relay looks at.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// header is what the relay needs of an IP packet: addresses, the final
// protocol (past IPv6 extension headers), the ports where it has them, and
// where the transport header starts.
type header struct {
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16
	transport        int // offset of the transport header; len(b) if truncated
}

// parseHeader parses an IPv4 or IPv6 packet's header. It reports false for
// anything that is not a whole, well-formed header. It does not allocate.
func parseHeader(b []byte) (header, bool) {
	var h header
	if len(b) < 1 {
		return h, false
	}
	fragmented := false
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return h, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || ihl > len(b) || total < ihl || total > len(b) {
			return h, false
		}
		h.src = netip.AddrFrom4([4]byte(b[12:16]))
		h.dst = netip.AddrFrom4([4]byte(b[16:20]))
		h.proto = b[9]
		h.transport = ihl
		fragmented = binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 // not the first fragment
	case 6:
		if len(b) < 40 || 40+int(binary.BigEndian.Uint16(b[4:6])) > len(b) {
			return h, false
		}
		h.src = netip.AddrFrom16([16]byte(b[8:24]))
		h.dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
	ext:
		for range 8 { // extension headers; more than 8 is not worth following
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > len(b) {
					return h, false
				}
				next, off = b[off], off+8+int(b[off+1])*8
			case 44: // fragment
				if off+8 > len(b) {
					return h, false
				}
				fragmented = binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0
				next, off = b[off], off+8
			case 51: // authentication header
				if off+8 > len(b) {
					return h, false
				}
				next, off = b[off], off+(int(b[off+1])+2)*4
			default:
				break ext
			}
		}
		if off > len(b) {
			return h, false
		}
		h.proto, h.transport = next, off
	default:
		return h, false
	}
	switch h.proto {
	case protoTCP, protoUDP, protoSCTP, 136: // 136: UDP-Lite
		if !fragmented && h.transport+4 <= len(b) {
			h.srcPort = binary.BigEndian.Uint16(b[h.transport:])
			h.dstPort = binary.BigEndian.Uint16(b[h.transport+2:])
		}
	}
	return h, true
}

// decrementHopLimit lowers a packet's TTL or Hop Limit by one, as RFC 9484
// §4.3 asks of a packet about to be sent into the tunnel, and reports false
// if it was already 1 or 0 (the packet is dropped).
func decrementHopLimit(b []byte) bool {
	if b[0]>>4 == 4 {
		if b[8] <= 1 {
			return false
		}
		b[8]--
		// RFC 1624 incremental update: the TTL is the high byte of its
		// 16-bit word, so the sum drops by 0x0100.
		sum := uint32(binary.BigEndian.Uint16(b[10:12])) + 0x0100
		sum = (sum & 0xffff) + (sum >> 16)
		binary.BigEndian.PutUint16(b[10:12], uint16(sum))
		return true
	}
	if b[7] <= 1 {
		return false
	}
	b[7]--
	return true
}

// ICMP errors the relay sends.
type icmpKind uint8

const (
	icmpProhibited icmpKind = iota + 1 // destination unreachable: administratively prohibited
	icmpBadSource                      // destination unreachable: source address failed policy
	icmpTooBig                         // packet too big (IPv4: fragmentation needed)
)

// isICMPError reports whether h's packet b is itself an ICMP error (or a
// packet ICMP errors must not answer), so that no error answers it.
func isICMPError(b []byte, h header) bool {
	if h.transport >= len(b) {
		return false
	}
	t := b[h.transport]
	switch h.proto {
	case protoICMP:
		return t != 0 && t != 8 && t != 13 && t != 14 // not an echo or timestamp
	case protoICMPv6:
		return t < 128
	}
	return false
}

// appendICMPError writes into out the ICMP error of kind from src about the
// invoking packet b (header h), addressed to b's source, and returns its
// length; 0 if b is one that no error may answer (an ICMP error, or from a
// multicast or unspecified source). mtu is for icmpTooBig. out needs room
// for 1280 bytes. It does not allocate.
func appendICMPError(out []byte, src netip.Addr, b []byte, h header, kind icmpKind, mtu int) int {
	if isICMPError(b, h) || !h.src.IsValid() || h.src.IsMulticast() || h.src.IsUnspecified() || src.Is4() != h.src.Is4() {
		return 0
	}
	if h.src.Is4() {
		// RFC 1812 §4.3.2.3: as much of the invoking packet as fits in 576 bytes.
		quote := min(len(b), 576-28)
		n := 28 + quote
		out = out[:n]
		putIPv4Header(out, src, h.src, protoICMP, n)
		icmp := out[20:]
		icmp[0], icmp[1] = 3, 13 // destination unreachable, administratively prohibited
		clear(icmp[2:8])
		switch kind {
		case icmpBadSource:
			icmp[1] = 10 // host administratively prohibited
		case icmpTooBig:
			icmp[1] = 4 // fragmentation needed
			binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
		}
		copy(icmp[8:], b[:quote])
		binary.BigEndian.PutUint16(icmp[2:4], ^fold(sum(0, icmp)))
		return n
	}
	// RFC 4443 §2.4(c): as much as fits in the minimum IPv6 MTU.
	quote := min(len(b), 1280-48)
	n := 48 + quote
	out = out[:n]
	putIPv6Header(out, src, h.src, protoICMPv6, n-40)
	icmp := out[40:]
	icmp[0], icmp[1] = 1, 1 // destination unreachable, administratively prohibited
	clear(icmp[2:8])
	switch kind {
	case icmpBadSource:
		icmp[1] = 5 // source address failed ingress/egress policy
	case icmpTooBig:
		icmp[0], icmp[1] = 2, 0
		binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
	}
	copy(icmp[8:], b[:quote])
	binary.BigEndian.PutUint16(icmp[2:4], ^fold(sum(pseudoSum6(src, h.src, len(icmp)), icmp)))
	return n
}

// appendEcho6 writes into out an ICMPv6 echo request of total length n (at
// least 48) from src to dst, and returns n: the probe RFC 9484 §10.1 sends to
// learn that the tunnel carries 1280-byte packets.
func appendEcho6(out []byte, src, dst netip.Addr, n int) int {
	out = out[:n]
	putIPv6Header(out, src, dst, protoICMPv6, n-40)
	icmp := out[40:]
	clear(icmp)
	icmp[0] = 128
	binary.BigEndian.PutUint16(icmp[4:6], 0x6d71) // identifier: "mq"
	binary.BigEndian.PutUint16(icmp[2:4], ^fold(sum(pseudoSum6(src, dst, len(icmp)), icmp)))
	return n
}

func putIPv4Header(b []byte, src, dst netip.Addr, proto uint8, total int) {
	clear(b[:20])
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(total))
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:12], ^fold(sum(0, b[:20])))
}

func putIPv6Header(b []byte, src, dst netip.Addr, next uint8, payload int) {
	clear(b[:40])
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(payload))
	b[6] = next
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
}

func pseudoSum6(src, dst netip.Addr, length int) uint32 {
	s, d := src.As16(), dst.As16()
	acc := sum(sum(0, s[:]), d[:])
	return acc + uint32(length>>16) + uint32(length&0xffff) + protoICMPv6
}

// sum adds b as big-endian 16-bit words to acc (the Internet checksum).
func sum(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
		if acc >= 1<<31 {
			acc = (acc & 0xffff) + (acc >> 16)
		}
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = (acc & 0xffff) + (acc >> 16)
	}
	return uint16(acc)
}
