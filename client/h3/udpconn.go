package h3

import (
	"errors"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/masqued/masqued/client/proxyconn"
)

// UDPConn is the client side of a CONNECT-UDP tunnel as a net.PacketConn,
// the same type over HTTP/3 as over client/h2's transports. Packets travel as
// QUIC DATAGRAM frames when both sides negotiated HTTP Datagrams and as
// DATAGRAM capsules on the request stream otherwise. Once the proxy has
// ended the tunnel because its target refused the packets (a reset with
// H3_CONNECT_ERROR), ReadFrom and WriteTo return a
// *proxyconn.TargetRefusedError.
type UDPConn = proxyconn.UDPConn

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
