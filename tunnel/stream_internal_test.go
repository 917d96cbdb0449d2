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

// A copier without a queue to watch reads a quiet or interactive source
// into its 512-byte head, with no pooled buffer; a read that fills the head
// goes on in a small pooled buffer, and one that fills that in a bulk one.
func TestCopierBuffers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int   // the most one read returns
		size  int   // bytes in all
		lens  []int // the buffer each read got
	}{
		{"interactive", 100, 300, []int{headBuf, headBuf, headBuf, headBuf}},
		{"a burst into a small buffer", 1000, 1000, []int{headBuf, smallStreamBuf - headBuf, headBuf}},
		{"bulk", 1 << 30, smallStreamBuf + 2*bulkStreamBuf + 1,
			[]int{headBuf, smallStreamBuf - headBuf, bulkStreamBuf, bulkStreamBuf, bulkStreamBuf, headBuf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
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
			if c.buf.small != nil || c.buf.bulk != nil {
				t.Error("the copier kept a buffer after it ended")
			}
		})
	}
}

// fakeQueue is a queueWatcher that is never ready: the copier waits after
// every short read. onWait runs in the wait.
type fakeQueue struct{ onWait func() }

func (fakeQueue) ready() bool   { return false }
func (q fakeQueue) wait() error { q.onWait(); return nil }

// With a queue to watch, the copier holds no buffer while it waits for data,
// at the start or after a read that drained the queue, and it still moves
// to bulk buffers once a read fills a small one.
func TestCopierWaitsWithoutBuffer(t *testing.T) {
	data := make([]byte, 2*1000+smallStreamBuf+bulkStreamBuf)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// A wait before each of two short reads and before a full small one,
	// then a full bulk read, and EOF.
	src := &recordingReader{data: bytes.Clone(data), chunk: 1000}
	var dst bytes.Buffer
	c := &streamCopier{dst: &dst, src: src, fin: func() error { return nil }, count: func(int) {}, seen: new(activity)}
	waits := 0
	c.queue = fakeQueue{onWait: func() {
		waits++
		if c.buf.small != nil || c.buf.bulk != nil {
			t.Errorf("wait %d: the copier holds a buffer", waits)
		}
		if waits == 3 {
			src.chunk = 1 << 30
		}
	}}
	if err := c.run(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes, want the %d sent", dst.Len(), len(data))
	}
	want := []int{smallStreamBuf, smallStreamBuf, smallStreamBuf, bulkStreamBuf, bulkStreamBuf}
	if !slices.Equal(src.lens, want) || waits != 3 {
		t.Errorf("read buffers %v after %d waits, want %v after 3", src.lens, waits, want)
	}
	if c.buf.small != nil || c.buf.bulk != nil {
		t.Error("the copier kept a buffer after it ended")
	}
}
