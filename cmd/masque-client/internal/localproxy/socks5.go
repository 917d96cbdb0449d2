package localproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// SOCKS5 wire constants (RFC 1928).
const (
	socksVersion = 5

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// SOCKS5 reply codes (RFC 1928 §6).
const (
	replySucceeded          = 0x00
	replyGeneralFailure     = 0x01
	replyNotAllowed         = 0x02
	replyNetworkUnreachable = 0x03
	replyHostUnreachable    = 0x04
	replyConnectionRefused  = 0x05
	replyTTLExpired         = 0x06
	replyCmdNotSupported    = 0x07
	replyAtypNotSupported   = 0x08
)

// maxAddrLen is the longest encoded address: ATYP, length, 255-byte name,
// port.
const maxAddrLen = 1 + 1 + 255 + 2

// socksAddr is a SOCKS5 address: an IP or a domain name, and a port.
// Domain names are kept as names so that the MASQUE proxy resolves them.
type socksAddr struct {
	ip   netip.Addr // valid unless name is set
	name string
	port uint16
}

// String is the address as a tunnel target, "host:port".
func (a socksAddr) String() string {
	host := a.name
	if host == "" {
		host = a.ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.port)))
}

// appendTo appends ATYP, the address and the port.
func (a socksAddr) appendTo(b []byte) []byte {
	switch {
	case a.name != "":
		b = append(b, atypDomain, byte(len(a.name)))
		b = append(b, a.name...)
	case a.ip.Is4():
		b = append(b, atypIPv4)
		b = append(b, a.ip.AsSlice()...)
	default:
		b = append(b, atypIPv6)
		ip16 := a.ip.As16()
		b = append(b, ip16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, a.port)
}

// socksError is a request the server refuses, with the reply code that says
// why. A zero reply means the request cannot be answered in SOCKS5 at all.
type socksError struct {
	reply byte
	msg   string
}

func (e *socksError) Error() string { return "socks5: " + e.msg }

// errTruncated is a message that ends early.
var errTruncated = errors.New("socks5: truncated message")

// readFull is io.ReadFull with errTruncated for a short message.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}

// readGreeting reads the method selection message (RFC 1928 §3) and
// reports whether it offers "no authentication required". The version byte
// is returned for the caller's error message.
func readGreeting(r io.Reader) (version byte, noAuth bool, err error) {
	var hdr [2]byte
	if err := readFull(r, hdr[:]); err != nil {
		return 0, false, err
	}
	if hdr[0] != socksVersion {
		return hdr[0], false, &socksError{msg: fmt.Sprintf("version %d, want 5", hdr[0])}
	}
	if hdr[1] == 0 {
		return hdr[0], false, &socksError{msg: "no authentication methods offered"}
	}
	var methods [255]byte
	if err := readFull(r, methods[:hdr[1]]); err != nil {
		return hdr[0], false, err
	}
	for _, m := range methods[:hdr[1]] {
		if m == methodNoAuth {
			return hdr[0], true, nil
		}
	}
	return hdr[0], false, nil
}

// socksRequest is a parsed request (RFC 1928 §4).
type socksRequest struct {
	cmd  byte
	addr socksAddr
}

// readRequest reads a request. Its errors are *socksError with the reply to
// send, or errTruncated or a read error.
func readRequest(r io.Reader) (socksRequest, error) {
	var hdr [3]byte
	if err := readFull(r, hdr[:]); err != nil {
		return socksRequest{}, err
	}
	if hdr[0] != socksVersion {
		return socksRequest{}, &socksError{reply: replyGeneralFailure, msg: fmt.Sprintf("request version %d, want 5", hdr[0])}
	}
	addr, err := readAddr(r)
	if err != nil {
		return socksRequest{}, err
	}
	switch hdr[1] {
	case cmdConnect, cmdUDPAssociate:
		return socksRequest{cmd: hdr[1], addr: addr}, nil
	case cmdBind:
		return socksRequest{}, &socksError{reply: replyCmdNotSupported, msg: "BIND is not supported"}
	}
	return socksRequest{}, &socksError{reply: replyCmdNotSupported, msg: fmt.Sprintf("unknown command %d", hdr[1])}
}

// readAddr reads ATYP, DST.ADDR and DST.PORT.
func readAddr(r io.Reader) (socksAddr, error) {
	var buf [maxAddrLen]byte
	if err := readFull(r, buf[:1]); err != nil {
		return socksAddr{}, err
	}
	have, rest := 1, 0 // bytes read, bytes to read
	switch buf[0] {
	case atypIPv4:
		rest = 4 + 2
	case atypIPv6:
		rest = 16 + 2
	case atypDomain:
		if err := readFull(r, buf[1:2]); err != nil {
			return socksAddr{}, err
		}
		have, rest = 2, int(buf[1])+2
	default:
		return socksAddr{}, &socksError{reply: replyAtypNotSupported, msg: fmt.Sprintf("unknown address type %d", buf[0])}
	}
	if err := readFull(r, buf[have:have+rest]); err != nil {
		return socksAddr{}, err
	}
	a, _, err := parseAddr(buf[:have+rest])
	return a, err
}

// parseAddr parses ATYP, DST.ADDR and DST.PORT at the start of b and returns
// the address and its encoded length.
func parseAddr(b []byte) (socksAddr, int, error) {
	if len(b) < 1 {
		return socksAddr{}, 0, errTruncated
	}
	var a socksAddr
	var n int
	switch b[0] {
	case atypIPv4, atypIPv6:
		size := 4
		if b[0] == atypIPv6 {
			size = 16
		}
		n = 1 + size + 2
		if len(b) < n {
			return socksAddr{}, 0, errTruncated
		}
		a.ip, _ = netip.AddrFromSlice(b[1 : 1+size])
	case atypDomain:
		if len(b) < 2 {
			return socksAddr{}, 0, errTruncated
		}
		n = 2 + int(b[1]) + 2
		if len(b) < n {
			return socksAddr{}, 0, errTruncated
		}
		name := string(b[2 : n-2])
		if ip, err := netip.ParseAddr(name); err == nil && ip.Zone() == "" {
			a.ip = ip // an IP literal sent as a name
		} else if err := checkHostname(name); err != nil {
			return socksAddr{}, 0, &socksError{reply: replyHostUnreachable, msg: err.Error()}
		} else {
			a.name = name
		}
	default:
		return socksAddr{}, 0, &socksError{reply: replyAtypNotSupported, msg: fmt.Sprintf("unknown address type %d", b[0])}
	}
	a.port = binary.BigEndian.Uint16(b[n-2 : n])
	return a, n, nil
}

// checkHostname accepts the names a resolver could look up: letters,
// digits, '-', '_' and '.', which is also what keeps "host:port" unambiguous
// for the tunnel.
func checkHostname(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("host name has a byte 0x%02x that no host name has", c)
		}
	}
	return nil
}

// appendReply appends a reply (RFC 1928 §6) with the bound address bnd.
func appendReply(b []byte, rep byte, bnd socksAddr) []byte {
	b = append(b, socksVersion, rep, 0)
	return bnd.appendTo(b)
}

// UDP request header (RFC 1928 §7): RSV(2) FRAG(1) then the address.
const udpHeaderFixed = 3

// parseUDPHeader parses the header of a SOCKS5 UDP datagram and returns the
// destination and the length of the header. A fragment (FRAG ≠ 0) is an
// error: fragmentation is optional and not supported.
func parseUDPHeader(b []byte) (socksAddr, int, error) {
	if len(b) < udpHeaderFixed {
		return socksAddr{}, 0, errTruncated
	}
	if b[2] != 0 {
		return socksAddr{}, 0, errFragment
	}
	a, n, err := parseAddr(b[udpHeaderFixed:])
	return a, udpHeaderFixed + n, err
}

// errFragment is a fragmented UDP datagram, which is dropped.
var errFragment = errors.New("socks5: fragmented datagram")

// appendUDPHeader appends the header of a datagram from a.
func appendUDPHeader(b []byte, a socksAddr) []byte {
	return a.appendTo(append(b, 0, 0, 0))
}
