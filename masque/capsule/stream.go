package capsule

import "context"

// DatagramReceiver is the receiving side of a request stream's HTTP
// Datagrams: *http3.Stream and *http3.RequestStream.
type DatagramReceiver interface {
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// StreamDatagrams are one request stream's HTTP Datagrams both ways:
// sent in QUIC DATAGRAM frames without a copy, received through the
// stream.
type StreamDatagrams struct {
	QUICDatagrams
	Stream DatagramReceiver
}

// ReceiveDatagram returns the stream's next HTTP Datagram payload.
func (d *StreamDatagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return d.Stream.ReceiveDatagram(ctx)
}
