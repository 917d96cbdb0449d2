package localproxy

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// socksSeeds are protocol-shaped requests: good ones of each address type,
// and the bad ones the server must refuse.
func socksSeeds() [][]byte {
	ipv6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	return [][]byte{
		{1, 192, 0, 2, 1, 0, 80},
		append(append([]byte{4}, ipv6...), 1, 187),
		append(append([]byte{3, 11}, "example.com"...), 0, 80),
		append(append([]byte{3, 9}, "127.0.0.1"...), 0, 80),
		append(append([]byte{3, 12}, "fe80::1%eth0"...), 0, 80),
		append(append([]byte{3, 4}, "a:80"...), 0, 80),
		{3, 0, 0, 80},
		{3, 255, 'a'},
		{9, 1, 2, 3, 4, 0, 80},
		{1, 192, 0},
		{},
	}
}

// FuzzReadRequest feeds a greeting and a request to the parsers the server
// runs on a connection. Whatever the bytes, they return an address that
// round-trips through its encoding and makes a well-formed target, or an
// error.
func FuzzReadRequest(f *testing.F) {
	for _, addr := range socksSeeds() {
		for _, cmd := range []byte{cmdConnect, cmdBind, cmdUDPAssociate, 9} {
			f.Add(append([]byte{5, 1, 0, 5, cmd, 0}, addr...))
		}
	}
	f.Add([]byte{5, 0})
	f.Add([]byte{5, 2, 1, 2})
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0})
	f.Add([]byte{5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		_, noAuth, err := readGreeting(r)
		if err != nil || !noAuth {
			return
		}
		req, err := readRequest(r)
		if err != nil {
			var se *socksError
			if !errors.As(err, &se) && !errors.Is(err, errTruncated) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if se != nil && se.reply == replySucceeded {
				t.Fatalf("an error with reply 0: %v", err)
			}
			return
		}
		if req.cmd != cmdConnect && req.cmd != cmdUDPAssociate {
			t.Fatalf("accepted command %d", req.cmd)
		}
		checkAddr(t, req.addr)
	})
}

// FuzzParseUDPHeader parses the header of a datagram from a SOCKS5 client.
func FuzzParseUDPHeader(f *testing.F) {
	for _, addr := range socksSeeds() {
		f.Add(append(append([]byte{0, 0, 0}, addr...), "payload"...))
		f.Add(append([]byte{0, 0, 1}, addr...))
	}
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, n, err := parseUDPHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || b[2] != 0 {
			t.Fatalf("header of %d bytes in %d, FRAG %d", n, len(b), b[2])
		}
		checkAddr(t, a)
		// RSV is not checked; the rest must be what appendUDPHeader writes.
		if hdr := appendUDPHeader(nil, a); a.name != "" && !bytes.Equal(hdr[2:], b[2:n]) {
			t.Fatalf("re-encoded % x, parsed % x", hdr, b[:n])
		}
	})
}

// checkAddr asserts what the server relies on in a parsed address.
func checkAddr(t *testing.T, a socksAddr) {
	t.Helper()
	if (a.name == "") == !a.ip.IsValid() {
		t.Fatalf("address %#v is neither a name nor an IP", a)
	}
	if a.ip.Zone() != "" {
		t.Fatalf("address %v has a zone", a)
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil || port != strconv.Itoa(int(a.port)) {
		t.Fatalf("target %q does not split: %v", a.String(), err)
	}
	if a.name != "" && (host != a.name || checkHostname(host) != nil) {
		t.Fatalf("target host %q for name %q", host, a.name)
	}
	enc := a.appendTo(nil)
	back, n, err := parseAddr(enc)
	if err != nil || n != len(enc) || back != a {
		t.Fatalf("%v encodes to % x, which parses to %v, %d, %v", a, enc, back, n, err)
	}
}
