package h3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// The client reads the proxy's control stream itself instead of letting
// http3.ClientConn do it. Only this keeps http3 from starting its own datagram
// dispatch, which feeds each stream through a 32-entry queue that overflows
// under bursts (quic-go#5799): that loss held tunnelled downloads far below
// what they reach when this client drains the connection's datagram queue
// itself and hands each datagram straight to its tunnel (masque-bench's
// h3-via-masqued case is the measurement to repeat).
// Everything else (request streams, QPACK) stays with quic-go's http3.

// HTTP/3 identifiers (RFC 9114 §6.2, §7.2, §11.2; RFC 9297; RFC 9220).
const (
	streamTypeControl      = 0x00
	frameTypeSettings      = 0x04
	frameTypeGoAway        = 0x07
	settingExtendedConnect = 0x08
	settingH3Datagram      = 0x33
	maxControlFrame        = 16 << 10 // larger frames on the control stream are a protocol error here
)

// peerSettings are the proxy's HTTP/3 SETTINGS that matter to tunnels.
type peerSettings struct {
	datagrams       bool // SETTINGS_H3_DATAGRAM = 1
	extendedConnect bool // SETTINGS_ENABLE_CONNECT_PROTOCOL = 1
}

// control owns the server-initiated streams of a client connection and the
// connection's datagram dispatch. Its goroutines end when the connection
// closes; wait waits for them.
type control struct {
	conn *quic.Conn
	raw  *http3.RawClientConn

	settingsOnce sync.Once
	settingsRcvd chan struct{} // closed once settings is set
	settings     peerSettings
	goAway       atomic.Bool // set under mu; read without it to refuse new tunnels

	mu      sync.Mutex              // guards tunnels, open, and goAway's setting
	tunnels map[uint64]datagramSink // datagram-mode tunnels by quarter stream ID
	open    int                     // tunnels the proxy accepted and the user has not closed

	unknownStream atomic.Uint64 // datagrams for no open tunnel
	wg            sync.WaitGroup
}

func newControl(conn *quic.Conn, raw *http3.RawClientConn) *control {
	c := &control{conn: conn, raw: raw, settingsRcvd: make(chan struct{}), tunnels: map[uint64]datagramSink{}}
	c.wg.Add(2)
	go c.acceptUni()
	go c.acceptBidi()
	return c
}

// acceptUni hands each stream the proxy opens to its reader: the control
// stream to readControl, everything else (QPACK streams, greased types) to
// quic-go's http3.
func (c *control) acceptUni() {
	defer c.wg.Done()
	for {
		str, err := c.conn.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		var typ [1]byte
		if _, err := str.Peek(typ[:]); err != nil {
			continue
		}
		if typ[0] != streamTypeControl {
			c.raw.HandleUnidirectionalStream(str)
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			err := readControl(bufio.NewReader(str), c.setSettings, c.setGoAway)
			// The control stream is critical: its end ends the connection
			// (RFC 9114 §6.2.1).
			code, msg := http3.ErrCodeClosedCriticalStream, "control stream closed"
			var fe *frameError
			if errors.As(err, &fe) {
				code, msg = fe.code, fe.msg
			}
			c.conn.CloseWithError(quic.ApplicationErrorCode(code), msg)
		}()
	}
}

// acceptBidi refuses bidirectional streams, which a server must not open.
func (c *control) acceptBidi() {
	defer c.wg.Done()
	for {
		str, err := c.conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		c.raw.HandleBidirectionalStream(str)
	}
}

// datagramSink takes a tunnel's HTTP Datagrams (their payload, Context ID
// first) from dispatchDatagrams, without blocking: *UDPConn, and the
// CONNECT-IP tunnel's queue.
type datagramSink interface{ Deliver(b []byte) }

type frameError struct {
	code http3.ErrCode
	msg  string
}

func (e *frameError) Error() string { return e.msg }

// readControl reads a control stream: SETTINGS first, then GOAWAY and frames
// to ignore, until the stream ends or breaks the protocol.
func readControl(r *bufio.Reader, onSettings func(peerSettings), onGoAway func()) error {
	if _, err := r.Discard(1); err != nil { // the stream type
		return err
	}
	first := true
	for {
		typ, err := quicvarint.Read(r)
		if err != nil {
			return err
		}
		length, err := quicvarint.Read(r)
		if err != nil {
			return err
		}
		if first != (typ == frameTypeSettings) {
			return &frameError{http3.ErrCodeMissingSettings, "first control frame must be SETTINGS, and only it"}
		}
		first = false
		if length > maxControlFrame {
			return &frameError{http3.ErrCodeFrameError, "control frame too large"}
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		switch typ {
		case frameTypeSettings:
			s, err := parseSettings(payload)
			if err != nil {
				return &frameError{http3.ErrCodeSettingsError, err.Error()}
			}
			onSettings(s)
		case frameTypeGoAway:
			onGoAway()
		}
	}
}

func (c *control) setSettings(s peerSettings) {
	c.settingsOnce.Do(func() { c.settings = s; close(c.settingsRcvd) })
}

func (c *control) setGoAway() {
	c.mu.Lock()
	c.goAway.Store(true)
	c.closeIfDrainedLocked()
	c.mu.Unlock()
}

func parseSettings(b []byte) (peerSettings, error) {
	var s peerSettings
	for len(b) > 0 {
		id, n, err := quicvarint.Parse(b)
		if err != nil {
			return s, fmt.Errorf("malformed SETTINGS: %w", err)
		}
		b = b[n:]
		val, n, err := quicvarint.Parse(b)
		if err != nil {
			return s, fmt.Errorf("malformed SETTINGS: %w", err)
		}
		b = b[n:]
		switch id {
		case settingH3Datagram:
			s.datagrams = val == 1
		case settingExtendedConnect:
			s.extendedConnect = val == 1
		}
	}
	return s, nil
}

// dispatchDatagrams reads every HTTP Datagram of the connection and hands it
// to the tunnel its quarter stream ID names, until the connection closes.
func (c *control) dispatchDatagrams() {
	defer c.wg.Done()
	for {
		b, err := c.conn.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		qsid, n, err := quicvarint.Parse(b)
		if err != nil {
			c.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeDatagramError), "datagram without quarter stream ID")
			return
		}
		c.mu.Lock()
		u := c.tunnels[qsid]
		c.mu.Unlock()
		if u == nil {
			c.unknownStream.Add(1) // RFC 9297 §2.1: drop silently
			continue
		}
		u.Deliver(b[n:])
	}
}

func (c *control) register(qsid uint64, u datagramSink) {
	c.mu.Lock()
	c.tunnels[qsid] = u
	c.mu.Unlock()
}

func (c *control) unregister(qsid uint64) {
	c.mu.Lock()
	delete(c.tunnels, qsid)
	c.mu.Unlock()
}

// opened and closed count the tunnels in use, so that after GOAWAY the
// connection is closed once the last one ends, as RFC 9114 §5.2 expects of a
// client (the proxy's graceful shutdown waits for it).
func (c *control) opened() {
	c.mu.Lock()
	c.open++
	c.mu.Unlock()
}

func (c *control) closed() {
	c.mu.Lock()
	c.open--
	c.closeIfDrainedLocked()
	c.mu.Unlock()
}

func (c *control) closeIfDrainedLocked() {
	if c.goAway.Load() && c.open == 0 {
		c.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
}
