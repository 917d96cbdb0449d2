package iptunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ipv4Packet builds an IPv4 packet with a valid header checksum.
func ipv4Packet(src, dst string, proto uint8, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	putIPv4Header(b, netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, len(b))
	copy(b[20:], payload)
	return b
}

func ipv6Packet(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	putIPv6Header(b, netip.MustParseAddr(src), netip.MustParseAddr(dst), next, len(payload))
	copy(b[40:], payload)
	return b
}

func ports(src, dst uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b, src)
	binary.BigEndian.PutUint16(b[2:], dst)
	return b
}

func TestParseHeader(t *testing.T) {
	// An IPv6 UDP packet behind a hop-by-hop options header.
	hop := append([]byte{protoUDP, 0, 0, 0, 0, 0, 0, 0}, ports(53, 5353)...)
	for _, tc := range []struct {
		name    string
		pkt     []byte
		ok      bool
		proto   uint8
		dstPort uint16
	}{
		{"v4 tcp", ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, ports(40000, 443)), true, protoTCP, 443},
		{"v4 icmp", ipv4Packet("10.0.0.2", "8.8.8.8", protoICMP, []byte{8, 0, 0, 0}), true, protoICMP, 0},
		{"v6 udp", ipv6Packet("fd00::2", "2001:4860::8888", protoUDP, ports(1, 53)), true, protoUDP, 53},
		{"v6 udp behind hop-by-hop", ipv6Packet("fd00::2", "2001:4860::8888", 0, hop), true, protoUDP, 5353},
		{"v4 truncated", ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, nil)[:19], false, 0, 0},
		{"v6 payload length past the end", ipv6Packet("fd00::2", "fd00::1", protoUDP, ports(1, 2))[:44], false, 0, 0},
		{"version 5", []byte{0x50, 0, 0, 0}, false, 0, 0},
		{"empty", nil, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := parseHeader(tc.pkt)
			if ok != tc.ok || (ok && (h.proto != tc.proto || h.dstPort != tc.dstPort)) {
				t.Fatalf("parseHeader = %+v, %v; want proto %d port %d, %v", h, ok, tc.proto, tc.dstPort, tc.ok)
			}
		})
	}
}

// checksumOK reports whether b's Internet checksum sums to all ones.
func checksumOK(acc uint32, b []byte) bool { return fold(sum(acc, b)) == 0xffff }

func TestDecrementHopLimit(t *testing.T) {
	for ttl := 2; ttl < 256; ttl++ {
		b := ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, ports(1, 2))
		b[8] = byte(ttl)
		binary.BigEndian.PutUint16(b[10:12], 0)
		binary.BigEndian.PutUint16(b[10:12], ^fold(sum(0, b[:20])))
		if !decrementHopLimit(b) || b[8] != byte(ttl-1) || !checksumOK(0, b[:20]) {
			t.Fatalf("TTL %d: after decrement TTL %d, checksum valid %v", ttl, b[8], checksumOK(0, b[:20]))
		}
	}
	b := ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, nil)
	b[8] = 1
	if decrementHopLimit(b) {
		t.Fatal("TTL 1 decremented")
	}
	b = ipv6Packet("fd00::2", "fd00::1", protoUDP, nil)
	b[7] = 1
	if decrementHopLimit(b) {
		t.Fatal("hop limit 1 decremented")
	}
}

func TestICMPError(t *testing.T) {
	out := make([]byte, 1500)
	t.Run("v4", func(t *testing.T) {
		orig := ipv4Packet("10.0.0.2", "8.8.8.8", protoTCP, ports(40000, 443))
		h, _ := parseHeader(orig)
		n := appendICMPError(out, netip.MustParseAddr("10.0.0.1"), orig, h, icmpProhibited, 0)
		e, ok := parseHeader(out[:n])
		if !ok || e.proto != protoICMP || e.dst != h.src || !checksumOK(0, out[:20]) || !checksumOK(0, out[20:n]) {
			t.Fatalf("bad ICMP error %x", out[:n])
		}
		if out[20] != 3 || out[21] != 13 {
			t.Fatalf("type %d code %d, want 3/13", out[20], out[21])
		}
		if !isICMPError(out[:n], e) || appendICMPError(out[n:], netip.MustParseAddr("10.0.0.1"), out[:n], e, icmpProhibited, 0) != 0 {
			t.Fatal("an ICMP error was answered with another")
		}
	})
	t.Run("v6 too big", func(t *testing.T) {
		orig := ipv6Packet("2001:4860::8888", "fd00::2", protoUDP, make([]byte, 1400))
		h, _ := parseHeader(orig)
		n := appendICMPError(out, netip.MustParseAddr("fd00::1"), orig, h, icmpTooBig, 1280)
		if n != 1280 {
			t.Fatalf("length %d, want 1280 (the quote cut to the minimum MTU)", n)
		}
		e, ok := parseHeader(out[:n])
		if !ok || e.proto != protoICMPv6 || out[40] != 2 || binary.BigEndian.Uint32(out[44:48]) != 1280 ||
			!checksumOK(pseudoSum6(e.src, e.dst, n-40), out[40:n]) {
			t.Fatalf("bad Packet Too Big %x", out[:48])
		}
	})
	t.Run("echo probe", func(t *testing.T) {
		n := appendEcho6(out, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 1280)
		e, ok := parseHeader(out[:n])
		if !ok || n != 1280 || out[40] != 128 || !checksumOK(pseudoSum6(e.src, e.dst, n-40), out[40:n]) {
			t.Fatal("bad echo request")
		}
	})
}

func TestPool(t *testing.T) {
	p := newPool(netip.MustParsePrefix("10.0.0.0/29")) // .1 gateway, .2-.6, .7 broadcast
	var got []netip.Addr
	for {
		a, ok := p.get()
		if !ok {
			break
		}
		got = append(got, a)
	}
	if len(got) != 5 || got[0].String() != "10.0.0.2" || got[4].String() != "10.0.0.6" {
		t.Fatalf("handed out %v", got)
	}
	p.put(got[2])
	if a, ok := p.get(); !ok || a != got[2] {
		t.Fatalf("after put: %v %v, want %v", a, ok, got[2])
	}
	p6 := newPool(netip.MustParsePrefix("fd00::/64"))
	if a, _ := p6.get(); a.String() != "fd00::2" {
		t.Fatalf("IPv6 pool gave %v first", a)
	}
}
