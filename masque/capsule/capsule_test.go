package capsule_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"go.uber.org/goleak"

	"github.com/masqued/masqued/masque/capsule"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// varint8 encodes v as an 8-byte varint, the longest form, which a peer may
// use for any value.
func varint8(v uint64) []byte { return quicvarint.AppendWithLen(nil, v, 8) }

// capsuleBytes frames value as a capsule of type typ.
func capsuleBytes(typ uint64, value []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = quicvarint.Append(b, uint64(len(value)))
	return append(b, value...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func newReader(stream []byte) *capsule.Reader {
	return capsule.NewReader(bufio.NewReaderSize(bytes.NewReader(stream), 16))
}

// result is one ReadDatagram outcome.
type result struct {
	value string
	err   error
}

func TestReadDatagram(t *testing.T) {
	dg := func(v string) []byte { return capsuleBytes(capsule.TypeDatagram, []byte(v)) }
	big := bytes.Repeat([]byte("x"), 100)
	tests := []struct {
		name    string
		stream  []byte
		bufSize int
		want    []result // in order; reading stops after the first io error
	}{
		{"empty stream", nil, 32, []result{{err: io.EOF}}},
		{"one datagram", dg("\x00ping"), 32, []result{{value: "\x00ping"}, {err: io.EOF}}},
		{"two datagrams", cat(dg("\x00a"), dg("\x00bc")), 32,
			[]result{{value: "\x00a"}, {value: "\x00bc"}, {err: io.EOF}}},
		{"zero-length datagram", cat(dg(""), dg("\x00z")), 32,
			[]result{{value: ""}, {value: "\x00z"}, {err: io.EOF}}},
		{"exactly buffer size", dg("\x0012345"), 6, []result{{value: "\x0012345"}, {err: io.EOF}}},
		{"unknown type skipped", cat(capsuleBytes(0x17, []byte("ignored")), dg("\x00after")), 32,
			[]result{{value: "\x00after"}, {err: io.EOF}}},
		{"unknown zero-length type skipped", cat(capsuleBytes(0x2a, nil), dg("\x00after")), 32,
			[]result{{value: "\x00after"}, {err: io.EOF}}},
		{"unknown type larger than buffer skipped", cat(capsuleBytes(0x17, big), dg("\x00after")), 8,
			[]result{{value: "\x00after"}, {err: io.EOF}}},
		{"unknown types only", cat(capsuleBytes(0x17, []byte("a")), capsuleBytes(0x3fff, []byte("b"))), 32,
			[]result{{err: io.EOF}}},
		{"GREASE type with 8-byte varint", cat(varint8(0x29*1000+0x17), varint8(3), []byte("abc"), dg("\x00g")), 32,
			[]result{{value: "\x00g"}, {err: io.EOF}}},
		{"8-byte type and length for a datagram", cat(varint8(capsule.TypeDatagram), varint8(3), []byte("\x00hi")), 32,
			[]result{{value: "\x00hi"}, {err: io.EOF}}},
		{"too large, then usable", cat(dg(string(big)), dg("\x00next")), 32,
			[]result{{err: capsule.ErrTooLarge}, {value: "\x00next"}, {err: io.EOF}}},
		{"one byte too large", cat(dg("\x0012345"), dg("\x00ok")), 5,
			[]result{{err: capsule.ErrTooLarge}, {value: "\x00ok"}, {err: io.EOF}}},
		{"too large with 8-byte length", cat(varint8(capsule.TypeDatagram), varint8(uint64(len(big))), big, dg("\x00ok")), 32,
			[]result{{err: capsule.ErrTooLarge}, {value: "\x00ok"}, {err: io.EOF}}},
		{"too large and truncated", cat(dg("\x00ok"), dg(string(big))[:50]), 32,
			[]result{{value: "\x00ok"}, {err: io.ErrUnexpectedEOF}}},
		{"EOF inside 2-byte type", cat(dg("\x00ok"), []byte{0x40}), 32,
			[]result{{value: "\x00ok"}, {err: io.ErrUnexpectedEOF}}},
		{"EOF inside 8-byte type", varint8(capsule.TypeDatagram)[:5], 32, []result{{err: io.ErrUnexpectedEOF}}},
		{"EOF after type", []byte{0x00}, 32, []result{{err: io.ErrUnexpectedEOF}}},
		{"EOF inside length", []byte{0x00, 0x80, 0x00}, 32, []result{{err: io.ErrUnexpectedEOF}}},
		{"EOF inside payload", dg("\x00payload")[:5], 32, []result{{err: io.ErrUnexpectedEOF}}},
		{"EOF inside unknown capsule", capsuleBytes(0x17, big)[:20], 32, []result{{err: io.ErrUnexpectedEOF}}},
		{"EOF inside unknown capsule's length", []byte{0x17, 0xc0, 0x00}, 32, []result{{err: io.ErrUnexpectedEOF}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReader(tt.stream)
			buf := make([]byte, tt.bufSize)
			for i, want := range tt.want {
				n, err := r.ReadDatagram(buf)
				if n > len(buf) {
					t.Fatalf("read %d: n = %d > len(buf) = %d", i, n, len(buf))
				}
				if !errors.Is(err, want.err) || (want.err == nil && err != nil) {
					t.Fatalf("read %d: err = %v, want %v", i, err, want.err)
				}
				if err == nil && string(buf[:n]) != want.value {
					t.Fatalf("read %d: got %q, want %q", i, buf[:n], want.value)
				}
			}
		})
	}
}

// errReader returns its error after the bytes it holds.
type errReader struct {
	b   []byte
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestReadDatagramPassesStreamErrors(t *testing.T) {
	errReset := errors.New("stream reset")
	for _, cut := range []int{0, 1, 2, 4} { // boundary, after type, after length, in payload
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			stream := capsuleBytes(capsule.TypeDatagram, []byte("\x00abcdef"))[:cut]
			r := capsule.NewReader(bufio.NewReader(&errReader{b: stream, err: errReset}))
			if _, err := r.ReadDatagram(make([]byte, 32)); !errors.Is(err, errReset) {
				t.Fatalf("err = %v, want %v", err, errReset)
			}
		})
	}
}

func TestReadDatagramHandleOther(t *testing.T) {
	const wanted, unwanted = 0xffe600, 0xffe601
	errStop := errors.New("handler says stop")
	dg := capsuleBytes(capsule.TypeDatagram, []byte("\x00dg"))
	tests := []struct {
		name     string
		stream   []byte
		fail     string // value on which the handler fails
		want     []string
		wantDg   []string
		wantErrs []error
	}{
		{"handled between datagrams",
			cat(dg, capsuleBytes(wanted, []byte("cid1")), dg), "",
			[]string{"cid1"}, []string{"\x00dg", "\x00dg"}, []error{nil, nil, io.EOF}},
		{"unwanted type skipped",
			cat(capsuleBytes(unwanted, []byte("no")), capsuleBytes(wanted, nil), dg), "",
			[]string{""}, []string{"\x00dg"}, []error{nil, io.EOF}},
		{"longer than the buffer skipped",
			cat(capsuleBytes(wanted, bytes.Repeat([]byte("x"), 17)), dg), "",
			nil, []string{"\x00dg"}, []error{nil, io.EOF}},
		{"handler error ends the read",
			cat(capsuleBytes(wanted, []byte("bad")), dg), "bad",
			[]string{"bad"}, nil, []error{errStop}},
		{"stream ends inside a handled capsule",
			capsuleBytes(wanted, []byte("cut"))[:5], "",
			nil, nil, []error{io.ErrUnexpectedEOF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReader(tt.stream) // a 16-byte bufio buffer
			var got []string
			r.HandleOther(func(typ uint64) bool { return typ == wanted }, func(typ uint64, value []byte) error {
				got = append(got, string(value))
				if tt.fail != "" && string(value) == tt.fail {
					return errStop
				}
				return nil
			})
			var gotDg []string
			buf := make([]byte, 32)
			for i, wantErr := range tt.wantErrs {
				n, err := r.ReadDatagram(buf)
				if !errors.Is(err, wantErr) {
					t.Fatalf("read %d: err = %v, want %v", i, err, wantErr)
				}
				if err == nil {
					gotDg = append(gotDg, string(buf[:n]))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || fmt.Sprint(gotDg) != fmt.Sprint(tt.wantDg) {
				t.Fatalf("handled %q and datagrams %q, want %q and %q", got, gotDg, tt.want, tt.wantDg)
			}
		})
	}
}

// headroomBuf returns a buffer of capsule.MaxHeaderLen bytes of headroom
// followed by payload.
func headroomBuf(payload []byte) []byte {
	return append(make([]byte, capsule.MaxHeaderLen, capsule.MaxHeaderLen+len(payload)), payload...)
}

// Payload sizes at the edges of the 1-, 2- and 4-byte varint forms.
var boundarySizes = []int{0, 1, 63, 64, 16383, 16384, 65535}

func TestPutDatagramHeaderRoundTrip(t *testing.T) {
	for _, size := range boundarySizes {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i)
			}
			buf := headroomBuf(payload)
			start := capsule.PutDatagramHeader(buf, capsule.MaxHeaderLen)
			wantHeader := 1 + quicvarint.Len(uint64(size))
			if got := capsule.MaxHeaderLen - start; got != wantHeader {
				t.Fatalf("header is %d bytes, want %d", got, wantHeader)
			}
			if !bytes.Equal(buf[start:], capsuleBytes(capsule.TypeDatagram, payload)) {
				t.Fatal("framed capsule differs from the reference encoding")
			}
			// One more capsule after it, to see the first ends where it should.
			stream := cat(buf[start:], capsuleBytes(capsule.TypeDatagram, []byte("\x00end")))
			r := newReader(stream)
			got := make([]byte, 65535)
			n, err := r.ReadDatagram(got)
			if err != nil || !bytes.Equal(got[:n], payload) {
				t.Fatalf("read back %d bytes, err %v; want the %d-byte payload", n, err, size)
			}
			if n, err := r.ReadDatagram(got); err != nil || string(got[:n]) != "\x00end" {
				t.Fatalf("next capsule: %q, %v", got[:n], err)
			}
		})
	}
}

func TestPutVarintRoundTrip(t *testing.T) {
	values := []uint64{0, 1, 63, 64, 16383, 16384, 65535, 1<<30 - 1, 1 << 30, quicvarint.Max}
	for _, v := range values {
		t.Run(strconv.FormatUint(v, 10), func(t *testing.T) {
			buf := headroomBuf([]byte("payload"))
			start := capsule.PutVarint(buf, capsule.MaxHeaderLen, v)
			if got, want := capsule.MaxHeaderLen-start, quicvarint.Len(v); got != want {
				t.Fatalf("varint is %d bytes, want %d", got, want)
			}
			got, n, err := quicvarint.Parse(buf[start:])
			if err != nil || got != v || start+n != capsule.MaxHeaderLen {
				t.Fatalf("Parse = %d, %d, %v; want %d ending at the payload", got, n, err, v)
			}
			if string(buf[capsule.MaxHeaderLen:]) != "payload" {
				t.Fatal("PutVarint overwrote the payload")
			}
		})
	}
}

// TestFrameHTTPDatagram frames a UDP payload the way the relay does: Context
// ID, then capsule header, both in the headroom.
func TestFrameHTTPDatagram(t *testing.T) {
	for _, size := range boundarySizes {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			payload := bytes.Repeat([]byte{0xa5}, size)
			buf := headroomBuf(payload)
			off := capsule.PutVarint(buf, capsule.MaxHeaderLen, capsule.ContextUDP)
			start := capsule.PutDatagramHeader(buf, off)
			got := make([]byte, 65536)
			n, err := newReader(buf[start:]).ReadDatagram(got)
			if err != nil {
				t.Fatal(err)
			}
			udp, err := capsule.SplitContext(got[:n])
			if err != nil || !bytes.Equal(udp, payload) {
				t.Fatalf("SplitContext: %d bytes, %v; want the %d-byte payload", len(udp), err, size)
			}
		})
	}
}

func TestSplitContext(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		payload string
		err     error
	}{
		{"context 0", []byte("\x00hello"), "hello", nil},
		{"context 0, empty payload", []byte{0x00}, "", nil},
		{"context 0 as 2-byte varint", []byte("\x40\x00hi"), "hi", nil},
		{"context 0 as 8-byte varint", cat(varint8(0), []byte("hi")), "hi", nil},
		{"context 2", []byte("\x02hello"), "", capsule.ErrUnknownContext},
		{"context 63", []byte{0x3f}, "", capsule.ErrUnknownContext},
		{"context 2 as 4-byte varint", []byte("\x80\x00\x00\x02x"), "", capsule.ErrUnknownContext},
		{"context max", varint8(quicvarint.Max), "", capsule.ErrUnknownContext},
		{"empty", nil, "", capsule.ErrMalformed},
		{"truncated 2-byte varint", []byte{0x40}, "", capsule.ErrMalformed},
		{"truncated 8-byte varint", varint8(0)[:7], "", capsule.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capsule.SplitContext(tt.in)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && string(got) != tt.payload {
				t.Fatalf("payload = %q, want %q", got, tt.payload)
			}
		})
	}
}

func TestPutDatagramHeaderSplitContextNoAllocs(t *testing.T) {
	buf := headroomBuf(make([]byte, 1200))
	if allocs := testing.AllocsPerRun(1000, func() {
		off := capsule.PutVarint(buf, capsule.MaxHeaderLen, capsule.ContextUDP)
		start := capsule.PutDatagramHeader(buf, off)
		if _, err := capsule.SplitContext(buf[off:]); err != nil || start == 0 {
			panic("framing failed")
		}
	}); allocs != 0 {
		t.Fatalf("%v allocations per datagram, want 0", allocs)
	}
}

// reusedReader reads a fixed stream over and over through one Reader, as a
// relay reads one stream through its pooled bufio.Reader.
type reusedReader struct {
	src    *bytes.Reader
	br     *bufio.Reader
	r      *capsule.Reader
	stream []byte
}

func newReusedReader(stream []byte) *reusedReader {
	rr := &reusedReader{src: bytes.NewReader(stream), stream: stream}
	rr.br = bufio.NewReaderSize(rr.src, 16<<10)
	rr.r = capsule.NewReader(rr.br)
	return rr
}

// readAll reads every datagram in the stream and returns their total length.
func (rr *reusedReader) readAll(buf []byte) int {
	rr.src.Reset(rr.stream)
	rr.br.Reset(rr.src)
	total := 0
	for {
		n, err := rr.r.ReadDatagram(buf)
		switch {
		case err == io.EOF:
			return total
		case errors.Is(err, capsule.ErrTooLarge):
		case err != nil:
			panic(err)
		}
		total += n
	}
}

// mixedStream is a datagram, an unknown capsule, a datagram too large for a
// 1500-byte buffer, and another datagram.
var mixedStream = cat(
	capsuleBytes(capsule.TypeDatagram, make([]byte, 1200)),
	capsuleBytes(0x17, make([]byte, 300)),
	capsuleBytes(capsule.TypeDatagram, make([]byte, 2000)),
	capsuleBytes(capsule.TypeDatagram, make([]byte, 64)),
)

func TestReadDatagramNoAllocs(t *testing.T) {
	rr := newReusedReader(mixedStream)
	buf := make([]byte, 1500)
	if got := rr.readAll(buf); got != 1200+64 {
		t.Fatalf("read %d bytes, want %d", got, 1200+64)
	}
	if allocs := testing.AllocsPerRun(1000, func() { rr.readAll(buf) }); allocs != 0 {
		t.Fatalf("%v allocations per stream, want 0", allocs)
	}
}

func BenchmarkReadDatagram(b *testing.B) {
	dg := capsuleBytes(capsule.TypeDatagram, make([]byte, 1200))
	rr := newReusedReader(bytes.Repeat(dg, 64))
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(int64(len(rr.stream)))
	for b.Loop() {
		rr.readAll(buf)
	}
}

func BenchmarkFrameDatagram(b *testing.B) {
	buf := headroomBuf(make([]byte, 1200))
	b.ReportAllocs()
	b.SetBytes(1200)
	for b.Loop() {
		off := capsule.PutVarint(buf, capsule.MaxHeaderLen, capsule.ContextUDP)
		capsule.PutDatagramHeader(buf, off)
		if _, err := capsule.SplitContext(buf[off:]); err != nil {
			b.Fatal(err)
		}
	}
}
