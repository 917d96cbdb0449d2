package capsule

import (
	"errors"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/masque"
)

// QUICDatagrams sends one request stream's HTTP Datagrams in QUIC DATAGRAM
// frames, for a proxy's tunnels and a client's alike. It bypasses
// http3.Stream.SendDatagram, which allocates and copies every datagram to
// prefix the quarter stream ID: the prefix is written into the caller's
// headroom instead.
type QUICDatagrams struct {
	conn *quic.Conn
	qsid uint64 // quarter stream ID (RFC 9297 §2.1)
}

// NewQUICDatagrams returns the sender for the request stream id on conn.
func NewQUICDatagrams(conn *quic.Conn, id quic.StreamID) QUICDatagrams {
	return QUICDatagrams{conn: conn, qsid: uint64(id / 4)}
}

// SendDatagram frames buf[off:] with the quarter stream ID and sends it. A
// datagram too large for the path fails with masque.ErrDatagramTooLarge.
func (d *QUICDatagrams) SendDatagram(buf []byte, off int) error {
	start := PutVarint(buf, off, d.qsid)
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
