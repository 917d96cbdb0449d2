package h3

import (
	"net"
	"sync"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// sendSide serialises writes to a request stream with closing it. quic-go
// forbids closing a stream's send side concurrently with a Write, while
// net.Conn users close from another goroutine precisely to cut a blocked
// write short. The zero value is not usable; set rs.
type sendSide struct {
	rs   *http3.RequestStream
	mu   sync.Mutex // held by write and close
	done bool       // FIN sent or stream reset; guarded by mu
}

func (s *sendSide) write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return 0, net.ErrClosed
	}
	return s.rs.Write(b)
}

// close sends FIN after the data written. If a write is in progress, which
// may be blocked on a peer that stopped reading, the send side is reset
// instead, so that close never waits on the network.
func (s *sendSide) close() error {
	if !s.mu.TryLock() {
		s.rs.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
		return nil
	}
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	return s.rs.Close()
}
