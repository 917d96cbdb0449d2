// Package connectip is CONNECT-IP's (RFC 9484) vocabulary, shared by
// masqued's server (package iptunnel) and clients: the capsules that assign
// addresses and advertise routes (§4.7), and ClientConn, the client side of
// a tunnel. It knows no server: clients build on it alone.
package connectip

import (
	"errors"
	"net/netip"

	"github.com/quic-go/quic-go/quicvarint"
)

// Protocol is the extended-CONNECT :protocol of CONNECT-IP.
const Protocol = "connect-ip"

// Capsule types of RFC 9484 §4.7.
const (
	TypeAddressAssign      = 0x01
	TypeAddressRequest     = 0x02
	TypeRouteAdvertisement = 0x03
)

// IsCapsuleType reports whether typ is one of CONNECT-IP's capsules.
func IsCapsuleType(typ uint64) bool { return typ >= TypeAddressAssign && typ <= TypeRouteAdvertisement }

// ErrMalformed reports a CONNECT-IP capsule that does not parse; RFC 9297
// §3.3 has the stream aborted.
var ErrMalformed = errors.New("malformed CONNECT-IP capsule")

// Address is an entry of ADDRESS_ASSIGN or ADDRESS_REQUEST: the two have
// the same layout (Request ID, IP Version, IP Address, Prefix Length).
type Address struct {
	ID     uint64
	Prefix netip.Prefix
}

// ParseAddresses calls f for each entry of an ADDRESS_ASSIGN or
// ADDRESS_REQUEST capsule's value. A malformed value (a bad version, a prefix
// longer than its address, host bits set) is an error; f has then been
// called for the entries before it.
func ParseAddresses(b []byte, f func(Address)) error {
	for len(b) > 0 {
		id, n, err := quicvarint.Parse(b)
		if err != nil {
			return ErrMalformed
		}
		b = b[n:]
		a, rest, ok := parseAddr(b)
		if !ok || len(rest) < 1 {
			return ErrMalformed
		}
		p, err := a.Prefix(int(rest[0]))
		if err != nil || int(rest[0]) > a.BitLen() || p.Addr() != a {
			return ErrMalformed
		}
		f(Address{ID: id, Prefix: p})
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

// AppendAddressAssign appends an ADDRESS_ASSIGN capsule listing addrs.
func AppendAddressAssign(b []byte, addrs []Address) []byte {
	return appendAddresses(b, TypeAddressAssign, addrs)
}

// AppendAddressRequest appends an ADDRESS_REQUEST capsule for addrs
// (unspecified addresses ask for any of their family).
func AppendAddressRequest(b []byte, addrs []Address) []byte {
	return appendAddresses(b, TypeAddressRequest, addrs)
}

func appendAddresses(b []byte, typ uint64, addrs []Address) []byte {
	return appendCapsule(b, typ, func(v []byte) []byte {
		for _, a := range addrs {
			v = quicvarint.Append(v, a.ID)
			v = appendAddr(v, a.Prefix.Addr())
			v = append(v, byte(a.Prefix.Bits()))
		}
		return v
	})
}

// SplitCapsule splits a whole capsule into its type and value.
func SplitCapsule(b []byte) (typ uint64, value []byte, err error) {
	typ, n, err := quicvarint.Parse(b)
	if err != nil {
		return 0, nil, ErrMalformed
	}
	l, m, err := quicvarint.Parse(b[n:])
	if err != nil || l != uint64(len(b)-n-m) {
		return 0, nil, ErrMalformed
	}
	return typ, b[n+m:], nil
}

// Range is an IP Address Range of a ROUTE_ADVERTISEMENT capsule.
type Range struct {
	Start, End netip.Addr
	Proto      uint8 // 0: any
}

// ParseRoutes calls f for each range of a ROUTE_ADVERTISEMENT capsule's
// value, and checks the ordering §4.7.3 requires (an error: the stream is to
// be aborted).
func ParseRoutes(b []byte, f func(Range)) error {
	var prev Range
	for first := true; len(b) > 0; first = false {
		start, rest, ok := parseAddr(b)
		if !ok {
			return ErrMalformed
		}
		n := 4
		if start.Is6() {
			n = 16
		}
		if len(rest) < n+1 {
			return ErrMalformed
		}
		var end netip.Addr
		if n == 4 {
			end = netip.AddrFrom4([4]byte(rest[:4]))
		} else {
			end = netip.AddrFrom16([16]byte(rest[:16]))
		}
		r := Range{Start: start, End: end, Proto: rest[n]}
		if end.Less(start) || end.Is4() != start.Is4() {
			return ErrMalformed
		}
		if !first {
			pv, rv := prev.Start.BitLen(), r.Start.BitLen()
			switch {
			case pv > rv:
				return ErrMalformed
			case pv == rv && prev.Proto > r.Proto:
				return ErrMalformed
			case pv == rv && prev.Proto == r.Proto && !prev.End.Less(r.Start):
				return ErrMalformed
			}
		}
		f(r)
		prev, b = r, rest[n+1:]
	}
	return nil
}

// AppendRouteAdvertisement appends a ROUTE_ADVERTISEMENT capsule; routes
// must be in the order §4.7.3 requires.
func AppendRouteAdvertisement(b []byte, routes []Range) []byte {
	return appendCapsule(b, TypeRouteAdvertisement, func(v []byte) []byte {
		for _, r := range routes {
			v = appendAddr(v, r.Start)
			if r.End.Is4() {
				e := r.End.As4()
				v = append(v, e[:]...)
			} else {
				e := r.End.As16()
				v = append(v, e[:]...)
			}
			v = append(v, r.Proto)
		}
		return v
	})
}

// PrefixRange is the range of addresses in p, for protocol proto.
func PrefixRange(p netip.Prefix, proto uint8) Range {
	p = p.Masked()
	start := p.Addr()
	b := start.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	end, _ := netip.AddrFromSlice(b)
	return Range{Start: start, End: end, Proto: proto}
}
