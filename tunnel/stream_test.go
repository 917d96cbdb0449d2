package tunnel_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// streamRelay is a TCP tunnel relaying between two real loopback
// connections: client is the application end of the client stream, target
// the origin's end of the target connection.
type streamRelay struct {
	p      *testProxy
	client *net.TCPConn
	target *net.TCPConn
	done   chan error // Relay's result
}

func startStreamRelay(t *testing.T, host string, limits tunnel.Limits) *streamRelay {
	t.Helper()
	p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Limits: limits})
	l := testnet.TCP(t, host)
	tun := p.open(t, tunnel.KindTCP, l.Addr().String())
	target, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	client, proxySide := tcpPair(t, host)
	r := &streamRelay{p: p, client: client, target: target.(*net.TCPConn), done: make(chan error, 1)}
	go func() { r.done <- tun.Relay(tcpStream{proxySide}, nil) }()
	t.Cleanup(func() {
		client.Close()
		target.Close()
		<-r.done
	})
	return r
}

// wait returns Relay's result, failing if it takes longer than d.
func (r *streamRelay) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for cleanup
		return err
	case <-time.After(d):
		t.Fatalf("Relay did not return within %v", d)
		return nil
	}
}

// readAll reads c to its end, failing after 5 seconds.
func readAll(t *testing.T, c net.Conn) ([]byte, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return io.ReadAll(c)
}

func TestRelayStreamHalfClose(t *testing.T) {
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		t.Run(host, func(t *testing.T) {
			r := startStreamRelay(t, host, tunnel.Limits{})
			up := bytes.Repeat([]byte("client "), 20000) // larger than one copy buffer
			if _, err := r.client.Write(up); err != nil {
				t.Fatal(err)
			}
			if err := r.client.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, r.target)
			if err != nil || !bytes.Equal(got, up) {
				t.Fatalf("target read %d bytes, %v; want %d and EOF", len(got), err, len(up))
			}
			// The target can still answer after the client's FIN.
			if _, err := r.target.Write([]byte("reply")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(r.client, buf); err != nil || string(buf) != "reply" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			if err := r.target.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(t, r.client); err != nil || len(got) != 0 {
				t.Fatalf("client read %q, %v; want EOF", got, err)
			}
			if err := r.wait(t, 5*time.Second); err != nil {
				t.Fatalf("Relay = %v, want nil", err)
			}
			for dir, want := range map[string]int{"up": len(up), "down": 5} {
				if got := r.p.metric(t, "masqued_tunnel_bytes_total", map[string]string{"kind": "tcp", "direction": dir}); got != float64(want) {
					t.Errorf("%s bytes counted %v, want %d", dir, got, want)
				}
			}
			if got := r.p.metric(t, "masqued_tunnels_active", map[string]string{"front": "test", "kind": "tcp"}); got != 0 {
				t.Errorf("active tunnels %v after the relay, want 0", got)
			}
		})
	}
}

// reset closes c with a TCP RST instead of a FIN.
func reset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestRelayStreamAbort(t *testing.T) {
	tests := []struct {
		name string
		// abort ends one side; survivor is the other side's application end.
		abort    func(*streamRelay) *net.TCPConn
		survivor func(*streamRelay) *net.TCPConn
	}{
		{"target resets", func(r *streamRelay) *net.TCPConn { return r.target }, func(r *streamRelay) *net.TCPConn { return r.client }},
		{"client resets", func(r *streamRelay) *net.TCPConn { return r.client }, func(r *streamRelay) *net.TCPConn { return r.target }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startStreamRelay(t, testnet.IPv4, tunnel.Limits{})
			survivor := tt.survivor(r)
			// Traffic first, so both copiers are mid-stream.
			if _, err := survivor.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			one := make([]byte, 1)
			tt.abort(r).SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(tt.abort(r), one); err != nil {
				t.Fatal(err)
			}
			reset(t, tt.abort(r))
			if err := r.wait(t, 5*time.Second); err == nil {
				t.Fatal("Relay = nil after a reset, want an error")
			}
			// The other side is released: it reads the end of the stream.
			if _, err := readAll(t, survivor); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				t.Fatalf("survivor read: %v", err)
			}
		})
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "connection reset") }

// keepBusy calls ping every fiftieth of idle until the quiet relay returns,
// and returns its result, with done left holding it for cleanup. It fails
// if the busy relay returns first, or the quiet one has not after twenty
// idle periods (a bound that only catches an idle timeout that never
// fires). Exactly when the timeout fires is TestWatchIdle's matter, on a
// fake clock; tests on real time only need pings closer together than it.
func keepBusy(t *testing.T, idle time.Duration, quiet, busy chan error, ping func()) error {
	t.Helper()
	hang := time.After(20 * idle)
	for {
		select {
		case err := <-quiet:
			quiet <- err
			return err
		case err := <-busy:
			busy <- err
			t.Fatalf("the busy tunnel's relay returned %v while traffic flowed", err)
		case <-hang:
			t.Fatal("the quiet tunnel is still open")
		case <-time.After(idle / 50):
			ping()
		}
	}
}

// TestRelayStreamIdleTimeout: of two tunnels with the same idle timeout,
// the one without traffic is closed for it while the one with traffic stays
// open; once the traffic stops, that one is closed too.
func TestRelayStreamIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	quiet := startStreamRelay(t, testnet.IPv4, tunnel.Limits{IdleTimeout: idle})
	busy := startStreamRelay(t, testnet.IPv4, tunnel.Limits{IdleTimeout: idle})
	buf := make([]byte, 4)
	ping := func() {
		t.Helper()
		if _, err := busy.client.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		busy.target.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(busy.target, buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := keepBusy(t, idle, quiet.done, busy.done, ping); err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("Relay of the quiet tunnel = %v, want the idle timeout", err)
	}
	ping() // the busy tunnel still carries traffic
	if err := busy.wait(t, 20*idle); err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("Relay of the busy tunnel = %v once idle, want the idle timeout", err)
	}
	// Both ends of both tunnels see them go away.
	for _, c := range []*net.TCPConn{quiet.client, quiet.target, busy.client, busy.target} {
		if _, err := readAll(t, c); err != nil && !isReset(err) {
			t.Fatalf("read after idle timeout: %v", err)
		}
	}
}

// TestRelayStreamBlockedWriter: a peer that stops reading blocks the relay's
// write to it; the idle timeout must still end the tunnel.
func TestRelayStreamBlockedWriter(t *testing.T) {
	const idle = 200 * time.Millisecond
	tests := []struct {
		name   string
		writer func(*streamRelay) *net.TCPConn // keeps writing; the other never reads
	}{
		{"target never reads", func(r *streamRelay) *net.TCPConn { return r.client }},
		{"client never reads", func(r *streamRelay) *net.TCPConn { return r.target }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startStreamRelay(t, testnet.IPv4, tunnel.Limits{IdleTimeout: idle})
			w := tt.writer(r)
			writerDone := make(chan error, 1)
			go func() {
				chunk := make([]byte, 64<<10)
				w.SetWriteDeadline(time.Now().Add(30 * time.Second))
				for {
					if _, err := w.Write(chunk); err != nil {
						writerDone <- err
						return
					}
				}
			}()
			if err := r.wait(t, 20*time.Second); err == nil || !strings.Contains(err.Error(), "idle") {
				t.Fatalf("Relay = %v, want the idle timeout", err)
			}
			w.Close() // release the writer if the relay's end has not reset it
			select {
			case <-writerDone:
			case <-time.After(5 * time.Second):
				t.Fatal("writer still blocked")
			}
		})
	}
}
