package tunnel

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is the client side of a tunnel as a front hands it over: an HTTP/3
// or HTTP/2 request stream after the 2xx response, or a hijacked HTTP/1.1
// connection after the 101.
type Stream interface {
	io.ReadWriter
	// CloseWrite ends the sending direction cleanly (FIN, END_STREAM).
	CloseWrite() error
	// Abort resets both directions and unblocks pending Read and Write calls.
	Abort() error
}

// closeWriter is implemented by *net.TCPConn.
type closeWriter interface{ CloseWrite() error }

// A copier borrows a pooled buffer only while data flows (an idle tunnel
// holds none; see streamCopier.awaitBurst): a small one, and a bulk one once a
// read fills the small one. Bulk writes mean fewer HTTP/2 DATA frames, TLS
// records and frame writer goroutines, and fewer QUIC stream writes per
// byte. The size was chosen on masque-bench's CONNECT cases,
// tls-via-masqued-h2 (HTTP/2) and tcp-via-masqued (HTTP/3), run with
// -inprocess: 128 KiB beat 32 KiB clearly, and 256 KiB gained little more for
// twice the memory. Run them again to change it.
const (
	smallStreamBuf = 32 << 10
	bulkStreamBuf  = 128 << 10
)

var (
	smallStreamBufs = sync.Pool{New: func() any { return new([smallStreamBuf]byte) }}
	bulkStreamBufs  = sync.Pool{New: func() any { return new([bulkStreamBuf]byte) }}
)

// activity is the time of the last byte seen in either direction, for idle
// timeouts. Stored as Unix nanoseconds.
type activity struct{ last atomic.Int64 }

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

// idleSince reports how long the tunnel has been quiet.
func (a *activity) idleSince() time.Duration {
	return time.Since(time.Unix(0, a.last.Load()))
}

// watchIdle calls onIdle once the tunnel has seen no traffic for idle. The
// returned stop function cancels the watch; once it returns, onIdle is not
// running and will not be called.
func (a *activity) watchIdle(idle time.Duration, onIdle func()) (stop func() bool) {
	a.touch()
	var timer *time.Timer
	var stopped bool
	var mu sync.Mutex // guards timer and stopped against the callback re-arming it
	mu.Lock()
	defer mu.Unlock()
	timer = time.AfterFunc(idle, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if idleFor := a.idleSince(); idleFor < idle {
			timer.Reset(idle - idleFor)
			return
		}
		onIdle()
	})
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		return timer.Stop()
	}
}

// errIdle is the cause when a tunnel is closed for inactivity.
var errIdle = errors.New("tunnel idle timeout")

// streamCopier copies one direction of a TCP tunnel. It is a named type so
// stack traces say which goroutine is which.
type streamCopier struct {
	dst   io.Writer
	src   io.Reader
	fin   func() error // half-closes dst after src's EOF
	count func(int)
	seen  *activity
	// queue, if set, watches the source socket's receive queue (the
	// target's). When a read drains it, the copier gives its buffer back
	// and waits for more data without one. Without a queue the copier
	// reads into head instead after a short read.
	queue queueWatcher
	buf   copyBuf
	head  [headBuf]byte
}

// headBuf is what a copier without a queue to watch holds while its source
// is quiet: a quiet or interactive stream is read into it, and written from
// it, without a pooled buffer. Writing a read that fills it moves on to a
// pooled buffer.
const headBuf = 512

// queueWatcher looks at a socket's receive queue (targetReader).
type queueWatcher interface {
	ready() bool // data, its end or an error is queued; never blocks
	wait() error // blocks until ready, or the socket closes
}

func (c *streamCopier) run() error {
	defer c.buf.release()
	size := smallStreamBuf
	buf, filled, err := c.awaitBurst(size) // filled: bytes read ahead into buf
	for {
		if err == io.EOF {
			return c.fin()
		} else if err != nil {
			return err
		}
		n, rerr := c.src.Read(buf[filled:])
		n, filled = n+filled, 0
		if err := c.write(buf[:n]); err != nil {
			return err
		}
		if rerr == io.EOF {
			return c.fin()
		}
		if rerr != nil {
			return rerr
		}
		switch {
		case n == smallStreamBuf && size == smallStreamBuf:
			size = bulkStreamBuf
			c.buf.release()
			buf = c.buf.take(size)
		case n < len(buf) && (c.queue == nil || !c.queue.ready()):
			// Drained, or perhaps: a bulk transfer from a target socket
			// rarely gets here, as more is queued by the time it looks.
			c.buf.release()
			buf, filled, err = c.awaitBurst(size)
		}
	}
}

// awaitBurst waits for the source's next burst holding no pooled buffer,
// then returns a buffer of size and how much of it is already read. It
// returns io.EOF when the source ends cleanly.
func (c *streamCopier) awaitBurst(size int) (buf []byte, filled int, err error) {
	if c.queue != nil {
		if err := c.queue.wait(); err != nil {
			return nil, 0, err
		}
		return c.buf.take(size), 0, nil
	}
	for {
		n, rerr := c.src.Read(c.head[:])
		if n == len(c.head) && rerr == nil {
			buf = c.buf.take(size)
			return buf, copy(buf, c.head[:]), nil
		}
		if err := c.write(c.head[:n]); err != nil {
			return nil, 0, err
		}
		if rerr != nil {
			return nil, 0, rerr
		}
	}
}

// write writes b, if any, to the destination and counts it.
func (c *streamCopier) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	c.seen.touch()
	// Count what the writer took even when it fails: an HTTP/2 stream can
	// deliver the bytes and then fail its flush because the client, having
	// read them, reset the stream.
	w, err := c.dst.Write(b)
	c.count(w)
	return err
}

// copyBuf is the pooled buffer a copier holds, if any: small or bulk.
type copyBuf struct {
	small *[smallStreamBuf]byte
	bulk  *[bulkStreamBuf]byte
}

func (b *copyBuf) take(size int) []byte {
	if size == bulkStreamBuf {
		b.bulk = bulkStreamBufs.Get().(*[bulkStreamBuf]byte)
		return b.bulk[:]
	}
	b.small = smallStreamBufs.Get().(*[smallStreamBuf]byte)
	return b.small[:]
}

func (b *copyBuf) release() {
	if b.small != nil {
		smallStreamBufs.Put(b.small)
		b.small = nil
	}
	if b.bulk != nil {
		bulkStreamBufs.Put(b.bulk)
		b.bulk = nil
	}
}

// relayStream relays a TCP tunnel between client and the target until both
// directions have ended (each side's FIN is passed on as a half-close), either
// side fails, or the tunnel is idle for Limits.IdleTimeout. On failure both
// sides are aborted, so no copy stays blocked.
func (t *Tunnel) relayStream(client Stream) error {
	var seen activity
	var idled atomic.Bool
	abortBoth := func() { client.Abort(); t.target.Close() }
	stop := seen.watchIdle(t.f.p.limits.IdleTimeout, func() {
		idled.Store(true)
		t.f.p.cfg.Metrics.CountLimit(LimitIdle)
		abortBoth()
	})
	defer stop()

	targetFIN := func() error {
		if cw, ok := t.target.(closeWriter); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	up := &streamCopier{dst: t.target, src: client, fin: targetFIN, count: t.countUp, seen: &seen}
	down := &streamCopier{dst: client, src: t.target, fin: client.CloseWrite, count: t.countDown, seen: &seen}
	if tr, ok := newTargetReader(t.target); ok {
		down.queue = tr
	}
	// The first failure aborts both directions, so that neither copy
	// stays blocked. The caller's goroutine copies downwards, so that an
	// idle tunnel costs one goroutine stack less.
	var once sync.Once
	var first error
	copyEnded := func(err error) {
		if err != nil {
			once.Do(func() { first = err; abortBoth() })
		}
	}
	var upDone sync.WaitGroup
	upDone.Go(func() { copyEnded(up.run()) })
	copyEnded(down.run())
	upDone.Wait()
	if idled.Load() {
		return errIdle
	}
	return first
}
