package proxyconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/capsule"
	"github.com/masqued/masqued/masque/quicproxy"
)

// UDPStream is a CONNECT-UDP request stream after the proxy's 2xx (101 on
// HTTP/1.1), as a client transport hands it to NewUDPConn: an HTTP/3
// request stream, an HTTP/2 stream, or an HTTP/1.1 connection.
type UDPStream interface {
	// Read reads the capsules the proxy sends; it returns an error once the
	// stream has ended.
	io.Reader
	// Write writes whole DATAGRAM capsules; the UDPConn never runs two
	// Writes at once, but Close may run during one.
	io.Writer
	// Close ends the tunnel at once, without waiting on the network, and
	// unblocks Read and Write. The UDPConn calls it once.
	Close() error
	// Refused reports whether err, which ended a Read or failed a Write of
	// a stream the UDPConn had not closed, is how the proxy says that the
	// target refused the tunnel's packets (see TargetRefusedError).
	Refused(err error) bool
}

// Datagrams is a tunnel's datagram channel beside its stream (QUIC DATAGRAM
// frames on HTTP/3). Only the sending side is here: the transport hands what
// it receives to UDPConn.Deliver.
type Datagrams interface {
	// SendDatagram sends buf[off:], an HTTP Datagram payload (Context ID
	// first), as one datagram. buf[:off] is headroom of UDPHeadroom bytes
	// that it may overwrite to frame the datagram in place. A datagram too
	// large for the path fails with an error wrapping
	// masque.ErrDatagramTooLarge.
	SendDatagram(buf []byte, off int) error
}

// UDPConn is the client side of a CONNECT-UDP tunnel as a net.PacketConn,
// on either transport: every packet goes to the tunnel's one target in an
// HTTP Datagram, and comes back in one. Datagrams travel as QUIC DATAGRAM
// frames where the transport has them (Datagrams), else as DATAGRAM
// capsules on the stream; capsules from the proxy are read in either case.
//
// One pump goroutine reads the stream's capsules into a bounded queue,
// where datagrams from Deliver join them, so that ReadFrom has deadlines
// whatever the transport (quic-go's Transport needs them to close).
//
// What does not fit is dropped and counted (Dropped), never the tunnel's
// end: packets with another Context ID, received ones too large, ones
// beyond a full queue, and sent ones that fit a UDP payload but not the
// path to the proxy, as a network drops them (so that the path-MTU probes
// of a QUIC connection inside the tunnel never end it). A WriteTo of more
// than masque.MaxUDPPayload bytes, which no UDP packet can carry, fails
// with an error wrapping syscall.EMSGSIZE, as a UDP socket's does.
//
// Once the proxy has ended the tunnel because its target refused the
// packets, ReadFrom and WriteTo return a *TargetRefusedError; after any
// other end, or Close, net.ErrClosed. ReadFrom and WriteTo may run
// concurrently with each other and with Close.
//
// Over HTTP/3, a tunnel may also be in QUIC-aware forwarded mode
// (draft-ietf-masque-quic-proxy; client/h3's Config.Forwarding): then a
// QUIC connection run over it through NewOriginTransport has its connection
// IDs registered with the proxy, and its short-header packets travel
// outside the connection to the proxy, scrambled, once the proxy has
// acknowledged their IDs. Forwarding reports whether the proxy accepted
// forwarded mode; Forwarded counts the packets that went so.
type UDPConn struct {
	stream        UDPStream
	datagrams     Datagrams // nil: DATAGRAM capsules on stream both ways
	local, remote net.Addr

	tunnelDone context.Context // done when the tunnel ends; its cause is ReadFrom's error
	endTunnel  context.CancelCauseFunc
	closing    atomic.Bool // Close has begun: the stream's end is ours
	// waitedForEnd: a failed write has waited for the tunnel's end once
	// (writeFailed); later ones do not wait again.
	waitedForEnd atomic.Bool
	deadline     ReadDeadline
	in           chan packet
	pump         sync.WaitGroup
	dropped      atomic.Uint64
	writeMu      sync.Mutex // one capsule at a time on the stream
	fwd          *forwarder // nil unless EnableForwarding; set before Start

	closeOnce sync.Once
	closeErr  error
}

// packet is a received UDP payload, b: in buf, a pooled buffer, when it
// came in a capsule, or in the transport's own buffer when it came in a
// datagram (buf nil).
type packet struct {
	b   []byte
	buf *[]byte
}

// udpQueueLen bounds the packets a UDPConn holds for ReadFrom: a
// bandwidth-delay product's worth of full-size packets at a few Gbit/s and a
// millisecond.
const udpQueueLen = 1024

// capsuleReadBuf is the read buffer of the stream's capsules: a dozen
// full-size QUIC packets per read, and small, as every UDP tunnel holds one
// (on HTTP/3 with datagrams, for the rare capsule and the stream's end).
// Longer capsules still read through.
const capsuleReadBuf = 16 << 10

// errMsgSize is WriteTo's error for a packet larger than any UDP payload.
var errMsgSize = os.NewSyscallError("write", syscall.EMSGSIZE)

// NewUDPConn returns the client side of the UDP tunnel on stream to
// remote, with datagrams as its datagram channel (nil for none). local is
// the address of the connection to the proxy. Deliver may be called at
// once, before the proxy has answered; call Start once it has accepted the
// tunnel, to read the stream.
func NewUDPConn(stream UDPStream, datagrams Datagrams, local, remote net.Addr) *UDPConn {
	u := &UDPConn{
		stream:    stream,
		datagrams: datagrams,
		local:     local,
		remote:    remote,
		in:        make(chan packet, udpQueueLen),
	}
	u.tunnelDone, u.endTunnel = context.WithCancelCause(context.Background())
	u.deadline.Init(u.tunnelDone)
	return u
}

// Start starts the pump that reads the stream until it ends. Call it once,
// after the proxy's response has been read from the stream.
func (u *UDPConn) Start() {
	u.pump.Add(1)
	go u.readCapsules()
	if u.fwd != nil {
		u.pump.Add(1)
		go u.fwd.writeCapsules()
	}
}

// readCapsules queues the UDP payloads of the stream's DATAGRAM capsules
// until the stream ends, and then ends the tunnel.
func (u *UDPConn) readCapsules() {
	defer u.pump.Done()
	cr := capsule.NewReader(bufio.NewReaderSize(u.stream, capsuleReadBuf))
	if u.fwd != nil {
		cr.HandleOther(quicproxy.IsCapsuleType, u.fwd.handleCapsule)
	}
	buf := make([]byte, 8+masque.MaxUDPPayload) // room for the Context ID
	for {
		n, err := cr.ReadDatagram(buf)
		if errors.Is(err, capsule.ErrTooLarge) {
			u.dropped.Add(1)
			continue
		}
		if err != nil {
			var cause error = net.ErrClosed
			if !u.closing.Load() && u.stream.Refused(err) {
				cause = &TargetRefusedError{Target: u.remote.String()}
			}
			u.endTunnel(cause)
			return
		}
		payload, err := capsule.SplitContext(buf[:n])
		if err != nil {
			u.dropped.Add(1)
			continue
		}
		b := GetPacket(len(payload))
		copy(*b, payload)
		if !u.enqueue(packet{b: *b, buf: b}) {
			PutPacket(b)
		}
	}
}

// Deliver queues b, an HTTP Datagram payload (Context ID first) that the
// transport received on the tunnel's datagram channel, for ReadFrom; b is
// the UDPConn's from then on. A datagram with another Context ID, or beyond
// a full queue, is dropped and counted. It never blocks.
func (u *UDPConn) Deliver(b []byte) {
	payload, err := capsule.SplitContext(b)
	if err != nil {
		u.dropped.Add(1)
		return
	}
	u.enqueue(packet{b: payload})
}

// enqueue queues p, or counts it dropped and reports false when the queue
// is full.
func (u *UDPConn) enqueue(p packet) bool {
	select {
	case u.in <- p:
		return true
	default:
		u.dropped.Add(1)
		return false
	}
}

// Dropped counts the packets dropped in either direction: with an unknown
// Context ID, too large for the path or for the receive buffer, or not read
// before the queue filled.
func (u *UDPConn) Dropped() uint64 { return u.dropped.Load() }

// ReadFrom reads the next packet from the tunnel's target. A packet longer
// than p is truncated, as on a UDP socket. Packets that arrived before the
// proxy ended the tunnel are still read; after Close, none.
func (u *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	ctx := u.deadline.Context()
	select {
	case pkt := <-u.in:
		return u.take(p, pkt), u.remote, nil
	case <-ctx.Done():
	}
	if u.tunnelDone.Err() == nil {
		return 0, nil, os.ErrDeadlineExceeded
	}
	if !u.closing.Load() {
		select {
		case pkt := <-u.in:
			return u.take(p, pkt), u.remote, nil
		default:
		}
	}
	return 0, nil, context.Cause(u.tunnelDone)
}

// take copies a queued packet into p and gives its buffer back.
func (u *UDPConn) take(p []byte, pkt packet) int {
	n := copy(p, pkt.b)
	if pkt.buf != nil {
		PutPacket(pkt.buf)
	}
	if u.fwd != nil {
		u.fwd.sawPacket(p[:n])
	}
	return n
}

// WriteTo sends p to the tunnel's target; addr is ignored, as the tunnel has
// one target. It does not wait for the target, only for the stream's flow
// control when capsules carry the packets.
func (u *UDPConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if len(p) > masque.MaxUDPPayload {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: u.local, Addr: u.remote, Err: errMsgSize}
	}
	if u.tunnelDone.Err() != nil {
		return 0, context.Cause(u.tunnelDone)
	}
	if u.fwd != nil && u.fwd.forward(p) {
		return len(p), nil
	}
	b := UDPDatagram(p)
	defer PutPacket(b)
	var err error
	if u.datagrams != nil {
		err = u.datagrams.SendDatagram(*b, UDPHeadroom)
		if errors.Is(err, masque.ErrDatagramTooLarge) {
			u.dropped.Add(1)
			return len(p), nil
		}
	} else {
		start := capsule.PutDatagramHeader(*b, UDPHeadroom)
		u.writeMu.Lock()
		_, err = u.stream.Write((*b)[start:])
		u.writeMu.Unlock()
	}
	if err != nil {
		return 0, u.writeFailed(err)
	}
	return len(p), nil
}

// writeFailedGrace is how long a failed write waits for the stream's reader
// to say why the tunnel ended; see writeFailed.
const writeFailedGrace = 100 * time.Millisecond

// writeFailed ends the tunnel with a *TargetRefusedError if err is the
// proxy's word that the target refused, and returns WriteTo's error. A write
// can also fail a moment before the reader sees how the stream ended: over
// HTTP/2 the transport closes the request body once the proxy has ended
// the stream, which is how masqued says the target refused. So a write
// that failed otherwise waits, briefly and once per tunnel at most, for the
// reader's verdict, and returns the tunnel's end if it comes: a
// *TargetRefusedError, not a closed pipe that a QUIC connection inside would
// report as silence.
func (u *UDPConn) writeFailed(err error) error {
	if u.closing.Load() {
		return err
	}
	if u.stream.Refused(err) {
		u.endTunnel(&TargetRefusedError{Target: u.remote.String()})
		return context.Cause(u.tunnelDone)
	}
	if u.tunnelDone.Err() == nil && u.waitedForEnd.Swap(true) {
		return err
	}
	t := time.NewTimer(writeFailedGrace)
	defer t.Stop()
	select {
	case <-u.tunnelDone.Done():
		return context.Cause(u.tunnelDone)
	case <-t.C:
		return err
	}
}

// Close ends the tunnel and waits for the pump.
func (u *UDPConn) Close() error {
	u.closeOnce.Do(func() {
		u.closing.Store(true)
		u.endTunnel(net.ErrClosed)
		if u.fwd != nil {
			u.fwd.close()
		}
		u.closeErr = u.stream.Close()
		u.pump.Wait()
	})
	return u.closeErr
}

// LocalAddr returns the local address of the connection to the proxy.
func (u *UDPConn) LocalAddr() net.Addr { return u.local }

// RemoteAddr returns the tunnel's target.
func (u *UDPConn) RemoteAddr() net.Addr { return u.remote }

// SetDeadline sets the read deadline; writes do not wait for the target.
func (u *UDPConn) SetDeadline(t time.Time) error { return u.SetReadDeadline(t) }

// SetReadDeadline makes ReadFrom return os.ErrDeadlineExceeded at t; the
// zero time clears it.
func (u *UDPConn) SetReadDeadline(t time.Time) error {
	u.deadline.Set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: WriteTo waits only for the
// stream's flow control.
func (u *UDPConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer accept quic-go's socket-buffer tuning,
// which has no meaning for a tunnel, so that quic-go does not warn about it.
func (u *UDPConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer: see SetReadBuffer.
func (u *UDPConn) SetWriteBuffer(int) error { return nil }

// HTTP3 returns an OriginTransport over u. tlsConf verifies the origin; qc
// configures the inner QUIC connection (nil for quic-go's defaults). Close
// the transport before u.
func (u *UDPConn) HTTP3(tlsConf *tls.Config, qc *quic.Config) *OriginTransport {
	return NewOriginTransport(u, tlsConf, qc)
}
