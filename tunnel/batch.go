package tunnel

import (
	"sync"

	"github.com/masqued/masqued/masque"
)

// groBufLen is the size of a GRO read's buffer: headroom, Context ID, and
// room for the largest UDP packet, which is also the most the kernel
// coalesces into one read (64 KiB), and one byte more.
const groBufLen = toClientOff + masque.MaxUDPPayload + 1

// groRead is what toClient holds while it drains a target's queue: a buffer
// for a run of coalesced packets and the system call's header. It is pooled
// whole, taken only once data is queued and given back when the queue is
// empty, so that an idle tunnel holds neither. Where the kernel coalesces
// nothing, this costs 64 KiB instead of one datagram buffer per draining
// tunnel, for a tunnel's life no more than a burst.
type groRead struct {
	buf [groBufLen]byte
	m   groMsg
}

var groReads = sync.Pool{New: func() any { return new(groRead) }}

// putGRORead gives g back to its pool with no pointer left in it.
func putGRORead(g *groRead) {
	g.m.clear()
	groReads.Put(g)
}
