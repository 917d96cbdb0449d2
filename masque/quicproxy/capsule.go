// Package quicproxy is the wire format of QUIC-aware proxying
// (draft-ietf-masque-quic-proxy): the connection ID capsules, the
// Proxy-QUIC-Forwarding and Proxy-QUIC-Port-Sharing header fields, and the
// packet transforms of forwarded mode.
//
// It stands apart from the proxy and the client so that both speak exactly the
// same format, and so that each parser is table-tested and fuzzed on its own,
// away from sockets and connection state. It keeps no state of its own: the
// mappings between connection IDs, VCIDs and 4-tuples belong to the proxy and
// the client. The packet transform runs once per forwarded packet, so it
// works in place and never allocates.
package quicproxy

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go/quicvarint"
)

// The capsule types of the draft (§IANA Considerations, Capsule Types). They
// are provisional codepoints that the draft says will change before
// publication, so both ends must run the same revision.
const (
	TypeRegisterClientCID uint64 = 0xffe600
	TypeRegisterTargetCID uint64 = 0xffe601
	TypeAckClientCID      uint64 = 0xffe602
	TypeAckClientVCID     uint64 = 0xffe603
	TypeAckTargetCID      uint64 = 0xffe604
	TypeCloseClientCID    uint64 = 0xffe605
	TypeCloseTargetCID    uint64 = 0xffe606
	TypeMaxConnectionIDs  uint64 = 0xffe607
)

// MaxCIDLen is the longest connection ID the invariants allow (RFC 8999); QUIC
// v1 allows 20. The capsules carry IDs of any QUIC version, so they are
// checked against this bound, not v1's.
const MaxCIDLen = 255

// resetTokenLen is the length of a QUIC v1 Stateless Reset Token (RFC 9000
// §10.3). The draft allows a zero-length field where there is no token (a
// peer that does not support stateless resets, or a future QUIC version).
const resetTokenLen = 16

// ErrMalformed wraps every failure of Parse, ParseForwarding and
// ParsePortSharing on bad input, so that a caller can tell a peer's protocol
// error (reset the stream, ignore the header) with errors.Is, whatever detail
// the message adds.
var ErrMalformed = errors.New("quicproxy: malformed")

// The capsule parse errors are values, not built per call: a peer that sends
// garbage costs no allocation to refuse.
var (
	errTruncated   = fmt.Errorf("%w capsule: a field runs past the end of the value", ErrMalformed)
	errTrailing    = fmt.Errorf("%w capsule: bytes after the last field", ErrMalformed)
	errCIDTooLong  = fmt.Errorf("%w capsule: connection ID longer than %d bytes", ErrMalformed, MaxCIDLen)
	errResetToken  = fmt.Errorf("%w capsule: stateless reset token neither 0 nor %d bytes", ErrMalformed, resetTokenLen)
	errMaxSeq      = fmt.Errorf("%w capsule: MAX_CONNECTION_IDS below 1", ErrMalformed)
	errUnknownType = errors.New("quicproxy: not a QUIC-aware proxying capsule type")
)

// IsCapsuleType reports whether typ is one of the types above. A capsule
// reader hands these to Parse and skips all others, as RFC 9297 §3.2 requires
// of unknown types.
func IsCapsuleType(typ uint64) bool {
	return typ >= TypeRegisterClientCID && typ <= TypeMaxConnectionIDs
}

// Capsule is one decoded capsule; which fields a type uses is the draft's
// (§Connection ID Capsules). Fields a type does not use are ignored by Append
// and left zero by Parse. The zero value of a byte field is an empty one: the
// draft gives every length a zero, meaning "none" (no VCID when forwarded mode
// is off, no reset token).
type Capsule struct {
	Type       uint64
	CID        []byte // every type but MAX_CONNECTION_IDS
	VCID       []byte // ACK_CLIENT_CID, ACK_TARGET_CID, ACK_CLIENT_VCID
	ResetToken []byte // REGISTER_TARGET_CID, ACK_TARGET_CID, ACK_CLIENT_VCID (0 or 16 bytes; other lengths are malformed)
	MaxSeq     uint64 // MAX_CONNECTION_IDS (>= 1, else malformed)
}

// layout is how a capsule type lays out its value.
type layout uint8

const (
	bareCID    layout = iota // the whole value is the CID (REGISTER_CLIENT_CID, CLOSE_*)
	cidToken                 // CID, reset token (REGISTER_TARGET_CID)
	cidVCID                  // CID, VCID (ACK_CLIENT_CID)
	cidVCIDTok               // CID, VCID, reset token (ACK_CLIENT_VCID, ACK_TARGET_CID)
	maxSeq                   // one varint (MAX_CONNECTION_IDS)
	unknown
)

func layoutOf(typ uint64) layout {
	switch typ {
	case TypeRegisterClientCID, TypeCloseClientCID, TypeCloseTargetCID:
		return bareCID
	case TypeRegisterTargetCID:
		return cidToken
	case TypeAckClientCID:
		return cidVCID
	case TypeAckClientVCID, TypeAckTargetCID:
		return cidVCIDTok
	case TypeMaxConnectionIDs:
		return maxSeq
	}
	return unknown
}

// Parse decodes the value of a capsule of type typ (the bytes after Type and
// Length). CID, VCID and ResetToken alias value, so a caller that keeps them
// past the life of its read buffer copies them.
//
// Lengths that overrun, trailing bytes, CIDs longer than MaxCIDLen, a reset
// token neither 0 nor 16 bytes long and a MAX_CONNECTION_IDS below 1 are
// ErrMalformed (the draft makes the last a stream error). An unknown typ is an
// error too, but not ErrMalformed: the value is not wrong, the caller should
// have skipped the capsule (IsCapsuleType).
func Parse(typ uint64, value []byte) (Capsule, error) {
	c := Capsule{Type: typ}
	l := layoutOf(typ)
	switch l {
	case unknown:
		return Capsule{}, errUnknownType
	case bareCID:
		if len(value) > MaxCIDLen {
			return Capsule{}, errCIDTooLong
		}
		c.CID = value
		return c, nil
	case maxSeq:
		v, n, err := quicvarint.Parse(value)
		switch {
		case err != nil:
			return Capsule{}, errTruncated
		case n != len(value):
			return Capsule{}, errTrailing
		case v < 1:
			return Capsule{}, errMaxSeq
		}
		c.MaxSeq = v
		return c, nil
	}
	r := fieldReader{rest: value}
	c.CID = r.field(MaxCIDLen, errCIDTooLong)
	if l != cidToken {
		c.VCID = r.field(MaxCIDLen, errCIDTooLong)
	}
	if l != cidVCID {
		c.ResetToken = r.field(resetTokenLen, errResetToken)
		if len(c.ResetToken) != 0 && len(c.ResetToken) != resetTokenLen && r.err == nil {
			r.err = errResetToken
		}
	}
	if r.err == nil && len(r.rest) != 0 {
		r.err = errTrailing
	}
	if r.err != nil {
		return Capsule{}, r.err
	}
	return c, nil
}

// fieldReader reads length-prefixed fields, keeping the first error so that
// Parse checks once at the end.
type fieldReader struct {
	rest []byte
	err  error
}

// field reads a varint length and that many bytes; a length above limit fails
// with tooLong, one past the end with errTruncated.
func (r *fieldReader) field(limit int, tooLong error) []byte {
	if r.err != nil {
		return nil
	}
	n, l, err := quicvarint.Parse(r.rest)
	switch {
	case err != nil:
		r.err = errTruncated
		return nil
	case n > uint64(limit):
		r.err = tooLong
		return nil
	case n > uint64(len(r.rest)-l):
		r.err = errTruncated
		return nil
	}
	f := r.rest[l : l+int(n)]
	r.rest = r.rest[l+int(n):]
	return f
}

// Append appends the whole capsule (Type, Length, value) to b. It does not
// validate beyond what encoding needs, so tests can build malformed capsules
// with it: a CID longer than MaxCIDLen or a 17-byte token are written as
// given. A Type that IsCapsuleType rejects gets an empty value. MaxSeq must fit
// a varint (below 2^62), or Append panics as quicvarint.Append does.
func (c *Capsule) Append(b []byte) []byte {
	l := layoutOf(c.Type)
	b = quicvarint.Append(b, c.Type)
	b = quicvarint.Append(b, c.valueLen(l))
	switch l {
	case bareCID:
		return append(b, c.CID...)
	case maxSeq:
		return quicvarint.Append(b, c.MaxSeq)
	case unknown:
		return b
	}
	b = appendField(b, c.CID)
	if l != cidToken {
		b = appendField(b, c.VCID)
	}
	if l != cidVCID {
		b = appendField(b, c.ResetToken)
	}
	return b
}

// valueLen is the length of the value Append writes for layout l.
func (c *Capsule) valueLen(l layout) uint64 {
	switch l {
	case bareCID:
		return uint64(len(c.CID))
	case maxSeq:
		return uint64(quicvarint.Len(c.MaxSeq))
	case unknown:
		return 0
	}
	n := fieldLen(c.CID)
	if l != cidToken {
		n += fieldLen(c.VCID)
	}
	if l != cidVCID {
		n += fieldLen(c.ResetToken)
	}
	return n
}

func fieldLen(f []byte) uint64 { return uint64(quicvarint.Len(uint64(len(f))) + len(f)) }

func appendField(b, f []byte) []byte {
	b = quicvarint.Append(b, uint64(len(f)))
	return append(b, f...)
}
