package capsule_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqued/masqued/masque/capsule"
)

// FuzzReadDatagram reads an arbitrary stream with a buffer of bufSize bytes
// (at most 4 KiB). The Reader must never panic, never report more than the
// buffer, fail only with the documented errors, stay usable after
// ErrTooLarge, end in io.EOF exactly when the stream holds whole capsules, and
// every datagram it returns must survive re-framing with PutDatagramHeader
// unchanged.
func FuzzReadDatagram(f *testing.F) {
	f.Add(capsuleBytes(capsule.TypeDatagram, []byte("\x00ping")), uint16(1500))
	f.Add(cat(capsuleBytes(0x17, []byte("skip")), capsuleBytes(capsule.TypeDatagram, []byte("\x00x"))), uint16(8))
	f.Add(capsuleBytes(capsule.TypeDatagram, make([]byte, 100))[:40], uint16(64))
	f.Fuzz(func(t *testing.T, stream []byte, bufSize uint16) {
		buf := make([]byte, bufSize%4097)
		r := capsule.NewReader(bufio.NewReaderSize(bytes.NewReader(stream), 16))
		for {
			n, err := r.ReadDatagram(buf)
			if n > len(buf) {
				t.Fatalf("n = %d > len(buf) = %d", n, len(buf))
			}
			switch {
			case errors.Is(err, capsule.ErrTooLarge):
				continue
			case err == io.EOF, err == io.ErrUnexpectedEOF:
				if whole := wholeCapsules(stream); (err == io.EOF) != whole {
					t.Fatalf("stream ended with %v; it holds whole capsules only: %v", err, whole)
				}
				return
			case err != nil:
				t.Fatalf("undocumented error %v", err)
			}
			checkReframe(t, buf[:n])
		}
	})
}

// wholeCapsules reports whether stream is a sequence of complete capsules,
// which is when reading it must end in io.EOF rather than
// io.ErrUnexpectedEOF.
func wholeCapsules(stream []byte) bool {
	for len(stream) > 0 {
		_, n, err := quicvarint.Parse(stream)
		if err != nil {
			return false
		}
		length, m, err := quicvarint.Parse(stream[n:])
		if err != nil || length > uint64(len(stream)-n-m) {
			return false
		}
		stream = stream[n+m+int(length):]
	}
	return true
}

// checkReframe frames value with PutDatagramHeader and reads it back.
func checkReframe(t *testing.T, value []byte) {
	t.Helper()
	framed := headroomBuf(value)
	start := capsule.PutDatagramHeader(framed, capsule.MaxHeaderLen)
	r := capsule.NewReader(bufio.NewReader(bytes.NewReader(framed[start:])))
	got := make([]byte, len(value))
	n, err := r.ReadDatagram(got)
	if err != nil || !bytes.Equal(got[:n], value) {
		t.Fatalf("re-framed %q read back as %q, %v", value, got[:n], err)
	}
	if _, err := r.ReadDatagram(got); err != io.EOF {
		t.Fatalf("after the re-framed capsule: %v, want io.EOF", err)
	}
}

// FuzzSplitContext: SplitContext never panics, fails only with the documented
// errors, and on success returns a proper suffix of its input.
func FuzzSplitContext(f *testing.F) {
	f.Add([]byte("\x00payload"))
	f.Add([]byte("\x02x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		payload, err := capsule.SplitContext(in)
		switch {
		case err == nil:
			if len(payload) >= len(in) || !bytes.HasSuffix(in, payload) {
				t.Fatalf("payload %q is not a proper suffix of %q", payload, in)
			}
			if len(payload) > 0 && &payload[0] != &in[len(in)-len(payload)] {
				t.Fatal("payload is a copy, not a sub-slice of the input")
			}
		case errors.Is(err, capsule.ErrUnknownContext), errors.Is(err, capsule.ErrMalformed):
			if payload != nil {
				t.Fatalf("payload %q returned with error %v", payload, err)
			}
		default:
			t.Fatalf("undocumented error %v", err)
		}
	})
}
