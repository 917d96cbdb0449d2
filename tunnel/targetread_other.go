//go:build !linux

package tunnel

import (
	"net"
	"syscall"
)

// targetReader is only written for Linux; elsewhere a tunnel reads its
// target blocking, with a buffer in hand.
type targetReader struct{}

func newTargetReader(net.Conn) (*targetReader, bool) { return nil, false }

func (*targetReader) wait() error { return nil }

func (*targetReader) ready() bool { return true }

// groMsg has no header where readGRO is not written.
type groMsg struct{}

func (*groMsg) clear() {}

func (*targetReader) enableGRO() {}

func (*targetReader) readGRO(*groMsg, []byte) (int, int, error) { return 0, 0, syscall.EAGAIN }
