package iptunnel

import (
	"errors"
	"net/netip"

	"github.com/quic-go/quic-go/quicvarint"
)

// Capsule types of RFC 9484 §4.7.
const (
	capsuleAddressAssign      = 0x01
	capsuleAddressRequest     = 0x02
	capsuleRouteAdvertisement = 0x03
)

var errMalformedCapsule = errors.New("malformed CONNECT-IP capsule")

// assignedAddress is an entry of ADDRESS_ASSIGN or ADDRESS_REQUEST: the two
// have the same layout (Request ID, IP Version, IP Address, Prefix Length).
type assignedAddress struct {
	id     uint64
	prefix netip.Prefix
}

// parseAddresses calls f for each entry of an ADDRESS_ASSIGN or
// ADDRESS_REQUEST capsule's value. A malformed value (a bad version, a prefix
// longer than its address, host bits set) is an error; f has then been
// called for the entries before it.
func parseAddresses(b []byte, f func(assignedAddress)) error {
	for len(b) > 0 {
		id, n, err := quicvarint.Parse(b)
		if err != nil {
			return errMalformedCapsule
		}
		b = b[n:]
		a, rest, ok := parseAddr(b)
		if !ok || len(rest) < 1 {
			return errMalformedCapsule
		}
		p, err := a.Prefix(int(rest[0]))
		if err != nil || int(rest[0]) > a.BitLen() || p.Addr() != a {
			return errMalformedCapsule
		}
		f(assignedAddress{id: id, prefix: p})
		b = rest[1:]
	}
	return nil
}

// parseAddr reads an IP Version byte and the address it announces.
func parseAddr(b []byte) (netip.Addr, []byte, bool) {
	if len(b) < 1 {
		return netip.Addr{}, nil, false
	}
	switch b[0] {
	case 4:
		if len(b) < 5 {
			return netip.Addr{}, nil, false
		}
		return netip.AddrFrom4([4]byte(b[1:5])), b[5:], true
	case 6:
		if len(b) < 17 {
			return netip.Addr{}, nil, false
		}
		return netip.AddrFrom16([16]byte(b[1:17])), b[17:], true
	}
	return netip.Addr{}, nil, false
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		s := a.As4()
		return append(append(b, 4), s[:]...)
	}
	s := a.As16()
	return append(append(b, 6), s[:]...)
}

// appendCapsule appends a capsule of type typ whose value is what value
// appends.
func appendCapsule(b []byte, typ uint64, value func([]byte) []byte) []byte {
	v := value(nil)
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, uint64(len(v)))
	return append(b, v...)
}

// appendAddressAssign appends an ADDRESS_ASSIGN capsule listing addrs.
func appendAddressAssign(b []byte, addrs []assignedAddress) []byte {
	return appendCapsule(b, capsuleAddressAssign, func(v []byte) []byte {
		for _, a := range addrs {
			v = quicvarint.Append(v, a.id)
			v = appendAddr(v, a.prefix.Addr())
			v = append(v, byte(a.prefix.Bits()))
		}
		return v
	})
}

// ipRange is an IP Address Range of a ROUTE_ADVERTISEMENT capsule.
type ipRange struct {
	start, end netip.Addr
	proto      uint8 // 0: any
}

// parseRoutes calls f for each range of a ROUTE_ADVERTISEMENT capsule's
// value, and checks the ordering §4.7.3 requires (an error: the stream is to
// be aborted).
func parseRoutes(b []byte, f func(ipRange)) error {
	var prev ipRange
	for first := true; len(b) > 0; first = false {
		start, rest, ok := parseAddr(b)
		if !ok {
			return errMalformedCapsule
		}
		n := 4
		if start.Is6() {
			n = 16
		}
		if len(rest) < n+1 {
			return errMalformedCapsule
		}
		var end netip.Addr
		if n == 4 {
			end = netip.AddrFrom4([4]byte(rest[:4]))
		} else {
			end = netip.AddrFrom16([16]byte(rest[:16]))
		}
		r := ipRange{start: start, end: end, proto: rest[n]}
		if end.Less(start) {
			return errMalformedCapsule
		}
		if !first {
			pv, rv := prev.start.BitLen(), r.start.BitLen()
			switch {
			case pv > rv:
				return errMalformedCapsule
			case pv == rv && prev.proto > r.proto:
				return errMalformedCapsule
			case pv == rv && prev.proto == r.proto && !prev.end.Less(r.start):
				return errMalformedCapsule
			}
		}
		f(r)
		prev, b = r, rest[n+1:]
	}
	return nil
}

// appendRouteAdvertisement appends a ROUTE_ADVERTISEMENT capsule; routes
// must be in the order §4.7.3 requires.
func appendRouteAdvertisement(b []byte, routes []ipRange) []byte {
	return appendCapsule(b, capsuleRouteAdvertisement, func(v []byte) []byte {
		for _, r := range routes {
			v = appendAddr(v, r.start)
			if r.end.Is4() {
				e := r.end.As4()
				v = append(v, e[:]...)
			} else {
				e := r.end.As16()
				v = append(v, e[:]...)
			}
			v = append(v, r.proto)
		}
		return v
	})
}

// prefixRange is the range of addresses in p.
func prefixRange(p netip.Prefix, proto uint8) ipRange {
	p = p.Masked()
	start := p.Addr()
	b := start.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	end, _ := netip.AddrFromSlice(b)
	return ipRange{start: start, end: end, proto: proto}
}
