package h3proxy

import (
	"errors"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/internal/proxyclient"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
)

// UDPConn is the client side of a CONNECT-UDP tunnel as a net.PacketConn,
// the same type over HTTP/3 as over h2proxy's transports. Packets travel as
// QUIC DATAGRAM frames when both sides negotiated HTTP Datagrams and as
// DATAGRAM capsules on the request stream otherwise. Once the proxy has
// ended the tunnel because its target refused the packets (a reset with
// H3_CONNECT_ERROR), ReadFrom and WriteTo return a
// *proxyclient.TargetRefusedError.
type UDPConn = proxyclient.UDPConn

// udpStream is a UDP tunnel's HTTP/3 request stream as UDPConn uses it.
type udpStream struct {
	rs   *http3.RequestStream
	send sendSide // capsule mode writes the stream; Close may race them
	ctl  *control
	qsid uint64 // quarter stream ID, under which ctl dispatches datagrams
}

func (s *udpStream) Read(b []byte) (int, error)  { return s.rs.Read(b) }
func (s *udpStream) Write(b []byte) (int, error) { return s.send.write(b) }

// Close stops dispatch to the tunnel, ends both directions of the stream and
// counts the tunnel closed.
func (s *udpStream) Close() error {
	s.ctl.unregister(s.qsid)
	s.rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	err := s.send.close()
	s.ctl.closed()
	return err
}

// Refused reports whether err is the proxy's reset of the stream with
// H3_CONNECT_ERROR, its word that the target refused the tunnel's packets.
func (s *udpStream) Refused(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == quic.StreamErrorCode(http3.ErrCodeConnectError)
}

// quicDatagrams sends one request stream's HTTP Datagrams in QUIC DATAGRAM
// frames, for the proxy's tunnels (tunnel.DatagramConn) and the client's
// (proxyclient.Datagrams) alike. It bypasses http3.Stream.SendDatagram,
// which allocates and copies every datagram to prefix the quarter stream ID:
// the prefix is written into the caller's headroom instead.
type quicDatagrams struct {
	conn *quic.Conn
	qsid uint64 // quarter stream ID (RFC 9297 §2.1)
}

func newQUICDatagrams(conn *quic.Conn, id quic.StreamID) quicDatagrams {
	return quicDatagrams{conn: conn, qsid: uint64(id / 4)}
}

// SendDatagram frames buf[off:] with the quarter stream ID and sends it. A
// datagram too large for the path fails with masque.ErrDatagramTooLarge.
func (d *quicDatagrams) SendDatagram(buf []byte, off int) error {
	start := capsule.PutVarint(buf, off, d.qsid)
	err := d.conn.SendDatagram(buf[start:])
	if tooLarge(err) {
		return masque.ErrDatagramTooLarge
	}
	return err
}

// tooLarge reports whether err is quic-go's DatagramTooLargeError. Called on
// every datagram, it must not allocate when err is nil (errors.As's target
// escapes to the heap, so it is declared only after the nil check).
func tooLarge(err error) bool {
	if err == nil {
		return false
	}
	var e *quic.DatagramTooLargeError
	return errors.As(err, &e)
}
