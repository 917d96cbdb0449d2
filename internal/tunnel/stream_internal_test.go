package tunnel

import (
	"bytes"
	"io"
	"slices"
	"testing"
)

// recordingReader serves data in reads of at most chunk bytes and records
// the buffer length of every Read.
type recordingReader struct {
	data  []byte
	chunk int
	lens  []int
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.lens = append(r.lens, len(p))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestCopierBuffers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int   // the most one read returns
		lens  []int // the buffer each read got
	}{
		{"interactive", 1000, []int{smallStreamBuf, smallStreamBuf, smallStreamBuf, smallStreamBuf}},
		{"short of full", smallStreamBuf - 1, []int{smallStreamBuf, smallStreamBuf, smallStreamBuf, smallStreamBuf}},
		{"bulk after one full read", 1 << 30, []int{smallStreamBuf, bulkStreamBuf, bulkStreamBuf, bulkStreamBuf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := 3 * tc.chunk
			if tc.chunk > bulkStreamBuf {
				size = smallStreamBuf + bulkStreamBuf + 1
			}
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			src := &recordingReader{data: bytes.Clone(data), chunk: tc.chunk}
			var dst bytes.Buffer
			var counted int
			c := &streamCopier{dst: &dst, src: src, fin: func() error { return nil }, count: func(n int) { counted += n }, seen: new(activity)}
			if err := c.run(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst.Bytes(), data) || counted != len(data) {
				t.Fatalf("copied %d bytes (counted %d), want the %d sent", dst.Len(), counted, len(data))
			}
			if !slices.Equal(src.lens, tc.lens) {
				t.Errorf("read buffers %v, want %v", src.lens, tc.lens)
			}
		})
	}
}
