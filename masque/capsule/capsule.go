// Package capsule implements the framing that HTTP Datagrams (RFC 9297) and
// CONNECT-UDP (RFC 9298) put around UDP payloads: the Capsule Protocol on a
// request stream (§3.2) and the Context ID that prefixes every HTTP Datagram
// payload.
//
// It exists apart from the tunnel core so that both the proxy fronts and the
// client library frame datagrams the same way, and so the parsers can be fuzzed
// on their own. Nothing here allocates per datagram: callers hand in buffers
// with headroom, and headers are written into that headroom in place.
package capsule

import (
	"bufio"
	"errors"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// TypeDatagram is the DATAGRAM capsule type (RFC 9297 §3.5).
const TypeDatagram = 0x00

// ContextUDP is the Context ID that CONNECT-UDP uses for UDP payloads
// (RFC 9298 §4). Datagrams with other Context IDs are dropped.
const ContextUDP = 0

// MaxHeaderLen is the most bytes a capsule header (type and length) or a
// quarter-stream-ID prefix can take. Buffers that carry a payload to be framed
// in place reserve at least this much headroom before it.
const MaxHeaderLen = 16

var (
	// ErrTooLarge reports a DATAGRAM capsule larger than the caller's buffer.
	// The capsule has been skipped; the stream is still usable.
	ErrTooLarge = errors.New("capsule: datagram larger than buffer")
	// ErrUnknownContext reports an HTTP Datagram whose Context ID is not
	// ContextUDP. RFC 9298 §4 says to drop it silently.
	ErrUnknownContext = errors.New("capsule: unknown context ID")
	// ErrMalformed reports an HTTP Datagram without a valid Context ID.
	ErrMalformed = errors.New("capsule: malformed datagram")
)

// Reader reads DATAGRAM capsules from a stream, skipping capsules of other
// types as RFC 9297 §3.2 requires, except those a handler set with
// HandleOther takes. A Reader is not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	wants  func(typ uint64) bool
	handle func(typ uint64, value []byte) error
}

// HandleOther makes ReadDatagram pass the value of each capsule whose type
// wants accepts to handle, instead of skipping it: how an extension such as
// QUIC-aware proxying (draft-ietf-masque-quic-proxy) gets its capsules from
// the stream that carries the datagrams. value is valid only during the
// call. A value longer than the bufio.Reader's buffer, which no such
// extension needs, is skipped as malformed input would be, without a copy.
// An error from handle ends ReadDatagram with it.
func (c *Reader) HandleOther(wants func(typ uint64) bool, handle func(typ uint64, value []byte) error) {
	c.wants, c.handle = wants, handle
}

// NewReader returns a Reader on br. The bufio.Reader is the caller's, so that it
// can be pooled.
func NewReader(br *bufio.Reader) *Reader { return &Reader{r: br} }

// Reset makes c read from br, as a new Reader would but for the handler of
// HandleOther, which it keeps, without allocating.
func (c *Reader) Reset(br *bufio.Reader) { c.r = br }

// ReadDatagram reads the next DATAGRAM capsule into buf and returns the length
// of its value (Context ID and payload). Capsules of other types are skipped.
//
// It returns io.EOF when the stream ends cleanly between capsules and
// io.ErrUnexpectedEOF when it ends inside one (a stream error per RFC 9297).
// A DATAGRAM capsule longer than buf is skipped and reported as ErrTooLarge;
// the Reader stays usable.
func (c *Reader) ReadDatagram(buf []byte) (int, error) {
	for {
		if _, err := c.r.Peek(1); err != nil {
			return 0, err // io.EOF at a capsule boundary
		}
		typ, err := quicvarint.Read(c.r)
		if err != nil {
			return 0, unexpected(err) // the stream ended inside the type
		}
		length, err := quicvarint.Read(c.r)
		if err != nil {
			return 0, unexpected(err)
		}
		if typ != TypeDatagram && c.wants != nil && c.wants(typ) && length <= uint64(c.r.Size()) {
			if err := c.other(typ, int(length)); err != nil {
				return 0, err
			}
			continue
		}
		if typ != TypeDatagram || length > uint64(len(buf)) {
			if err := c.discard(length); err != nil {
				return 0, err
			}
			if typ == TypeDatagram {
				return 0, ErrTooLarge
			}
			continue
		}
		n, err := io.ReadFull(c.r, buf[:length])
		if err != nil {
			return n, unexpected(err)
		}
		return n, nil
	}
}

// other hands the n-byte value of a capsule of type typ, read in place in
// the bufio.Reader's buffer, to the HandleOther handler.
func (c *Reader) other(typ uint64, n int) error {
	value, err := c.r.Peek(n)
	if err != nil {
		return unexpected(err)
	}
	if err := c.handle(typ, value); err != nil {
		return err
	}
	_, err = c.r.Discard(n)
	return err
}

func (c *Reader) discard(n uint64) error {
	for n > 0 {
		chunk := int(min(n, 1<<30))
		d, err := c.r.Discard(chunk)
		n -= uint64(d)
		if err != nil {
			return unexpected(err)
		}
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// PutDatagramHeader writes a DATAGRAM capsule header for buf[off:] into the
// headroom buf[:off] and returns the index where the capsule starts. off must
// be at least MaxHeaderLen.
func PutDatagramHeader(buf []byte, off int) int {
	n := uint64(len(buf) - off)
	start := off - 1 - quicvarint.Len(n)
	b := append(buf[start:start], TypeDatagram)
	quicvarint.Append(b, n)
	return start
}

// PutVarint writes v as a QUIC variable-length integer into the headroom
// buf[:off], immediately before buf[off:], and returns the index where it
// starts. off must be at least quicvarint.Len(v).
func PutVarint(buf []byte, off int, v uint64) int {
	start := off - quicvarint.Len(v)
	quicvarint.Append(buf[start:start], v)
	return start
}

// SplitContext parses the Context ID at the front of an HTTP Datagram payload
// and returns the UDP payload behind it. It returns ErrUnknownContext for a
// Context ID other than ContextUDP and ErrMalformed when there is none.
func SplitContext(b []byte) ([]byte, error) {
	id, n, err := quicvarint.Parse(b)
	if err != nil {
		return nil, ErrMalformed
	}
	if id != ContextUDP {
		return nil, ErrUnknownContext
	}
	return b[n:], nil
}
