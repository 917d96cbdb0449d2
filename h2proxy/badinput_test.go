package h2proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/internal/testnet"
)

// rawH1 opens a TLS connection speaking HTTP/1.1 to p.
func rawH1(t *testing.T, p *testProxy) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	cfg := testnet.NewCert(t).ClientTLS()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", p.Addr.String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

// upgradeUDP sends an HTTP/1.1 CONNECT-UDP request to target and checks the
// 101.
func upgradeUDP(t *testing.T, p *testProxy, target *net.UDPAddr) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	conn, br := rawH1(t, p)
	fmtReq := "GET /.well-known/masque/udp/127.0.0.1/%d/ HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n"
	if _, err := fmt.Fprintf(conn, fmtReq, target.Port, p.Addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Capsule-Protocol") != "?1" || resp.Header.Get("Upgrade") != "connect-udp" {
		t.Fatalf("answer %s %v, want 101 with Upgrade and Capsule-Protocol", resp.Status, resp.Header)
	}
	return conn, br
}

// frame frames a capsule of type typ around value.
func frame(typ uint64, value []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = quicvarint.Append(b, uint64(len(value)))
	return append(b, value...)
}

func datagram(payload string) []byte { return frame(0, append([]byte{0}, payload...)) }

// readDatagram reads one DATAGRAM capsule and returns its UDP payload.
func readDatagram(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	r := quicvarint.NewReader(br)
	typ, err := quicvarint.Read(r)
	if err != nil {
		t.Fatal(err)
	}
	n, err := quicvarint.Read(r)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, n)
	if _, err := io.ReadFull(br, v); err != nil {
		t.Fatal(err)
	}
	if typ != 0 || len(v) == 0 || v[0] != 0 {
		t.Fatalf("capsule type %d value %x, want a DATAGRAM with context 0", typ, v)
	}
	return string(v[1:])
}

func TestMalformedCapsules(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	echo := testnet.UDPEcho(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		tail []byte // sent after a good datagram, before the stream ends
	}{
		{"truncated varint", []byte{0x40}},
		{"length past end", append(quicvarint.Append(quicvarint.Append(nil, 0), 100), "short"...)},
		{"huge length", quicvarint.Append(quicvarint.Append(nil, 0), quicvarint.Max)},
		{"truncated length", []byte{0x00, 0x80, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := upgradeUDP(t, p, echo)
			conn.Write(datagram("before"))
			if got := readDatagram(t, br); got != "before" {
				t.Fatalf("echo %q", got)
			}
			conn.Write(tc.tail)
			conn.CloseWrite()
			// The tunnel ends: the proxy closes its side.
			if _, err := io.ReadAll(br); err != nil && !isClosed(err) {
				t.Fatalf("reading after a malformed capsule: %v", err)
			}
		})
	}
	// The proxy lives on.
	conn, br := upgradeUDP(t, p, echo)
	conn.Write(datagram("after"))
	if got := readDatagram(t, br); got != "after" {
		t.Fatalf("echo %q", got)
	}
}

func isClosed(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "closed")
}

// TestCapsulesSkipped sends what a tunnel must pass over: unknown capsule
// types, unknown Context IDs, an empty DATAGRAM. None ends the tunnel.
func TestCapsulesSkipped(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	conn, br := upgradeUDP(t, p, testnet.UDPEcho(t, "127.0.0.1"))
	var b bytes.Buffer
	b.Write(frame(0x2a, []byte("unknown type")))
	b.Write(frame(0x17f3a, nil)) // greased-looking type, empty
	b.Write(frame(0, []byte{0x02, 'x'}))
	b.Write(frame(0, nil))
	b.Write(datagram("through"))
	conn.Write(b.Bytes())
	if got := readDatagram(t, br); got != "through" {
		t.Fatalf("echo %q", got)
	}
	if n := p.metric(t, "masqued_datagrams_dropped_total", "reason", "unknown_context"); n != 1 {
		t.Errorf("dropped{unknown_context} = %v, want 1", n)
	}
}

func TestBadRequests(t *testing.T) {
	p := startProxy(t, "127.0.0.1")
	for _, tc := range []struct {
		name, request string
		status        int
		proxyStatus   string
	}{
		{"bad template path", "GET /.well-known/masque/udp/127.0.0.1/notaport/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", 400, "http_request_error"},
		{"unknown upgrade", "GET /.well-known/masque/udp/127.0.0.1/53/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-ip\r\n\r\n", 400, "http_request_error"},
		{"connect without port", "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "http_request_error"},
		{"https absolute-form", "GET https://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "http_request_error"},
		{"oversized header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, ""},
		{"not a tunnel", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "http_request_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawH1(t, p)
			io.WriteString(conn, tc.request)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("Proxy-Status"), tc.proxyStatus) {
				t.Fatalf("%s, Proxy-Status %q; want %d with %q", resp.Status, resp.Header.Get("Proxy-Status"), tc.status, tc.proxyStatus)
			}
		})
	}
	// The proxy lives on.
	c := p.dial(t, h2.Config{})
	conn, err := c.DialTCP(testContext(t), testnet.TCPEcho(t, "127.0.0.1").String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}
