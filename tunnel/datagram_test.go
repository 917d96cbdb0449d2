package tunnel_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/tunnel"
)

// capsuleRelay is a UDP tunnel in capsule mode: DATAGRAM capsules on a real
// loopback TCP connection standing in for the request stream, and a
// connected UDP socket to the target.
type capsuleRelay struct {
	p      *testProxy
	client *net.TCPConn    // the client application's end of the stream
	r      *capsule.Reader // reads client
	done   chan error      // Relay' result
}

func startCapsuleRelay(t *testing.T, host, target string, limits tunnel.Limits) *capsuleRelay {
	t.Helper()
	p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}, Limits: limits})
	tun := p.open(t, tunnel.KindUDP, target)
	client, proxySide := tcpPair(t, host)
	r := &capsuleRelay{p: p, client: client, r: capsule.NewReader(bufio.NewReader(client)), done: make(chan error, 1)}
	go func() { r.done <- tun.Relay(tcpStream{proxySide}, nil) }()
	t.Cleanup(func() {
		client.Close()
		<-r.done
	})
	return r
}

// send writes raw capsule bytes to the relay.
func (r *capsuleRelay) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.client.Write(b); err != nil {
		t.Fatal(err)
	}
}

// expect reads the next datagram from the relay and checks it carries
// Context ID 0 and payload.
func (r *capsuleRelay) expect(t *testing.T, payload []byte) {
	t.Helper()
	buf := make([]byte, 70000)
	r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := r.r.ReadDatagram(buf)
	if err != nil {
		t.Fatalf("reading a datagram: %v", err)
	}
	got, err := capsule.SplitContext(buf[:n])
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("got %q (%v), want %q", truncate(got), err, truncate(payload))
	}
}

// ping sends payload with Context ID 0 and expects it echoed back.
func (r *capsuleRelay) ping(t *testing.T, payload []byte) {
	t.Helper()
	r.send(t, udpCapsule(0, payload))
	r.expect(t, payload)
}

// finish sends the client's FIN and checks that the relay then ends cleanly.
func (r *capsuleRelay) finish(t *testing.T) {
	t.Helper()
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Relay = %v, want nil after the client's FIN", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return after the client's FIN")
	}
}

func (r *capsuleRelay) dropped(t *testing.T, reason string) float64 {
	t.Helper()
	return r.p.metric(t, "masqued_datagrams_dropped_total", map[string]string{"reason": reason})
}

func truncate(b []byte) []byte { return b[:min(len(b), 40)] }

// rawCapsule frames value as a capsule of type typ.
func rawCapsule(typ uint64, value []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = quicvarint.Append(b, uint64(len(value)))
	return append(b, value...)
}

// udpCapsule is a DATAGRAM capsule holding payload under Context ID ctx.
func udpCapsule(ctx uint64, payload []byte) []byte {
	return rawCapsule(capsule.TypeDatagram, append(quicvarint.Append(nil, ctx), payload...))
}

func TestRelayDatagramsCapsules(t *testing.T) {
	const max = 1200
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		t.Run(host, func(t *testing.T) {
			echo := testnet.UDPEcho(t, host)
			r := startCapsuleRelay(t, host, echo.String(), tunnel.Limits{MaxUDPPayload: max})
			r.ping(t, []byte("ping 1"))
			r.ping(t, nil) // an empty UDP payload is a datagram too
			r.ping(t, bytes.Repeat([]byte{0xab}, max))

			// Datagrams before each ping are dropped; the ping still passes,
			// and its echo proves the drop has been counted.
			steps := []struct {
				name   string
				bad    []byte
				reason string
			}{
				{"unknown context", udpCapsule(2, []byte("compressed")), tunnel.DropUnknownContext},
				{"unknown context, long varint", rawCapsule(capsule.TypeDatagram, append(quicvarint.AppendWithLen(nil, 4, 8), 'x')), tunnel.DropUnknownContext},
				{"no context ID", rawCapsule(capsule.TypeDatagram, nil), tunnel.DropMalformed},
				{"payload one byte over", udpCapsule(0, make([]byte, max+1)), tunnel.DropTooLarge},
				{"capsule over the buffer", udpCapsule(0, make([]byte, 3*max)), tunnel.DropTooLarge},
				{"capsule of 64 KiB", udpCapsule(0, make([]byte, 65535)), tunnel.DropTooLarge},
			}
			for i, s := range steps {
				before := r.dropped(t, s.reason)
				r.send(t, s.bad)
				r.ping(t, []byte("after "+s.name))
				if got := r.dropped(t, s.reason); got != before+1 {
					t.Fatalf("step %d (%s): %s drops %v, want %v", i, s.name, s.reason, got, before+1)
				}
			}

			// Unknown capsule types are skipped without a count.
			r.send(t, rawCapsule(0x17, []byte("unknown")))
			r.send(t, append(quicvarint.AppendWithLen(nil, 0x29*3+0x17, 8), append(quicvarint.AppendWithLen(nil, 5, 8), "GREASE"[:5]...)...))
			r.send(t, rawCapsule(0x3fff, bytes.Repeat([]byte("z"), 20000)))
			r.ping(t, []byte("after unknown types"))

			// Several datagrams in one write, and one capsule over many.
			r.send(t, bytes.Join([][]byte{udpCapsule(0, []byte("a")), udpCapsule(0, []byte("b")), udpCapsule(0, []byte("c"))}, nil))
			for _, want := range []string{"a", "b", "c"} {
				r.expect(t, []byte(want))
			}
			split := udpCapsule(0, []byte("split across writes"))
			for _, b := range split {
				r.send(t, []byte{b})
			}
			r.expect(t, []byte("split across writes"))

			// The client's FIN ends the tunnel cleanly, and the relay's FIN
			// follows.
			r.finish(t)
			if _, err := r.r.ReadDatagram(make([]byte, 100)); err != io.EOF {
				t.Fatalf("client read %v after the relay ended, want io.EOF", err)
			}
			pings := 3 + len(steps) + 1 + 3 + 1
			for dir, want := range map[string]float64{"up": float64(pings), "down": float64(pings)} {
				if got := r.p.metric(t, "masqued_datagrams_total", map[string]string{"direction": dir}); got != want {
					t.Errorf("datagrams %s: %v, want %v", dir, got, want)
				}
			}
			if got := r.dropped(t, tunnel.DropWriteError); got != 0 {
				t.Errorf("write errors %v, want 0", got)
			}
		})
	}
}

func TestRelayDatagramsTruncatedCapsule(t *testing.T) {
	echo := testnet.UDPEcho(t, testnet.IPv4)
	r := startCapsuleRelay(t, testnet.IPv4, echo.String(), tunnel.Limits{})
	r.ping(t, []byte("ping"))
	r.send(t, udpCapsule(0, []byte("cut short"))[:4])
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil {
			t.Fatal("Relay = nil for a stream that ended inside a capsule")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return")
	}
}

// TestRelayDatagramsIdleTimeout: of two UDP tunnels with the same idle
// timeout, the one without traffic is closed for it while the one with
// traffic stays open; once the traffic stops, that one is closed too.
func TestRelayDatagramsIdleTimeout(t *testing.T) {
	echo := testnet.UDPEcho(t, testnet.IPv4)
	const idle = 500 * time.Millisecond
	quiet := startCapsuleRelay(t, testnet.IPv4, echo.String(), tunnel.Limits{IdleTimeout: idle})
	busy := startCapsuleRelay(t, testnet.IPv4, echo.String(), tunnel.Limits{IdleTimeout: idle})
	pings := 0
	ping := func() {
		t.Helper()
		busy.ping(t, []byte("ping "+strconv.Itoa(pings)))
		pings++
	}
	if err := keepBusy(t, idle, quiet.done, busy.done, ping); err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("Relay of the quiet tunnel = %v, want the idle timeout", err)
	}
	ping() // the busy tunnel still carries traffic
	select {
	case err := <-busy.done:
		busy.done <- err
		if err == nil || !strings.Contains(err.Error(), "idle") {
			t.Fatalf("Relay of the busy tunnel = %v once idle, want the idle timeout", err)
		}
	case <-time.After(20 * idle): // only catches an idle timeout that never fires
		t.Fatal("Relay of the busy tunnel did not time out")
	}
}

// refusedStream is a tcpStream that implements tunnel.RefusedEnder and
// notes which way the relay ended it.
type refusedStream struct {
	tcpStream
	how chan string // "abort" or "refused", once
}

func (s refusedStream) Abort() error {
	s.how <- "abort"
	return s.tcpStream.Abort()
}

func (s refusedStream) EndRefused() error {
	s.how <- "refused"
	return s.tcpStream.Abort()
}

// TestRelayDatagramsTargetRefused: a target that refuses the tunnel's
// packets (ICMP port unreachable) before it has sent any ends the tunnel
// with masque.ErrTargetRefused, through the stream's EndRefused, and the tunnel is
// counted and logged as connection_refused.
func TestRelayDatagramsTargetRefused(t *testing.T) {
	for _, host := range []string{testnet.IPv4, testnet.IPv6} {
		t.Run(host, func(t *testing.T) {
			target := testnet.ClosedUDP(t, host)
			testnet.SkipWithoutICMP(t, target)
			var log bytes.Buffer // written by Close, read once Relay has returned
			p := newProxy(t, tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true},
				Logger: slog.New(slog.NewTextHandler(&log, nil))})
			tun := p.open(t, tunnel.KindUDP, target)
			client, proxySide := tcpPair(t, host)
			stream := refusedStream{tcpStream{proxySide}, make(chan string, 2)}
			done := make(chan error, 1)
			go func() { done <- tun.Relay(stream, nil) }()
			t.Cleanup(func() { client.Close(); <-done })

			// A refusal comes back within a millisecond on loopback; the
			// bound only catches a relay that never ends.
			hang := time.After(10 * time.Second)
			var err error
		sending:
			for {
				if _, err := client.Write(udpCapsule(0, []byte("anyone?"))); err != nil {
					t.Fatalf("writing to the relay: %v", err)
				}
				select {
				case err = <-done:
					done <- err
					break sending
				case <-time.After(20 * time.Millisecond):
				case <-hang:
					t.Fatal("Relay did not end on a target that refuses its packets")
				}
			}
			if !errors.Is(err, masque.ErrTargetRefused) {
				t.Fatalf("Relay = %v, want ErrTargetRefused", err)
			}
			if _, e := masque.StatusOf(err); e.Kind != masque.StatusConnectionRefused {
				t.Errorf("StatusOf(%v) kind %q, want %q", err, e.Kind, masque.StatusConnectionRefused)
			}
			if how := <-stream.how; how != "refused" {
				t.Errorf("the relay ended the stream with %s, want EndRefused", how)
			}
			if got := p.metric(t, "masqued_tunnel_errors_total", map[string]string{"front": "test", "proxy_status": "connection_refused"}); got != 1 {
				t.Errorf("connection_refused tunnel errors: %v, want 1", got)
			}
			if got := p.metric(t, "masqued_datagrams_dropped_total", map[string]string{"reason": tunnel.DropWriteError}); got != 0 {
				t.Errorf("write_error drops %v, want 0: the refusal ends the tunnel instead", got)
			}
			if line := log.String(); !strings.Contains(line, "msg=tunnel ") || !strings.Contains(line, "status=200") || !strings.Contains(line, "proxy_status=connection_refused") {
				t.Errorf("access log %q, want a tunnel line with status=200 and proxy_status=connection_refused", line)
			}
		})
	}
}

// TestRelayDatagramsRefusedAfterAnswer: once the target has answered,
// ICMP port-unreachable errors from it are counted drops and the tunnel
// lives on, as it must for a target that restarts.
func TestRelayDatagramsRefusedAfterAnswer(t *testing.T) {
	target := testnet.UDP(t, testnet.IPv4)
	r := startCapsuleRelay(t, testnet.IPv4, target.LocalAddr().String(), tunnel.Limits{})
	r.send(t, udpCapsule(0, []byte("hello")))
	buf := make([]byte, 100)
	target.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang bound only
	n, from, err := target.ReadFrom(buf)
	if err != nil {
		t.Fatalf("target read: %v", err)
	}
	if _, err := target.WriteTo(buf[:n], from); err != nil {
		t.Fatal(err)
	}
	r.expect(t, []byte("hello"))
	target.Close() // the target goes away: the proxy's packets draw ICMP errors
	testnet.SkipWithoutICMP(t, target.LocalAddr().String())

	hang := time.After(10 * time.Second) // a hang bound only: see above
	sent := 0
	for r.dropped(t, tunnel.DropWriteError) == 0 {
		r.send(t, udpCapsule(0, []byte("anyone?")))
		sent++
		select {
		case err := <-r.done:
			t.Fatalf("Relay ended with %v on a target that had answered", err)
		case <-time.After(20 * time.Millisecond):
		case <-hang:
			t.Fatal("no write_error drop counted")
		}
	}
	// Each send draws at most one ICMP error, and each error is counted
	// once: a reader that did not consume the error would count it again
	// and again.
	time.Sleep(100 * time.Millisecond)
	if got := r.dropped(t, tunnel.DropWriteError); got > float64(sent) {
		t.Fatalf("%v write errors counted for %d packets sent", got, sent)
	}
	select {
	case err := <-r.done:
		t.Fatalf("Relay ended with %v on a target that had answered", err)
	default:
	}
	r.finish(t)
	if got := r.p.metric(t, "masqued_tunnel_errors_total", map[string]string{"proxy_status": "connection_refused"}); got != 0 {
		t.Errorf("connection_refused tunnel errors: %v, want 0", got)
	}
}
