package load

import (
	"context"
	"sync/atomic"
	"time"
)

// schedule hands out operations to workers: a numbered ticket each, up to a
// limit, and in open loop the time at which the operation was meant to start.
//
// Open loop measures latency from that intended start, not from when a
// worker got round to it: when the proxy stalls, the operations that should
// have started during the stall count their wait. Timing from the actual
// start would let the load generator slow down with the system under test
// and hide exactly the stalls a benchmark is for ("coordinated omission").
//
// It is safe for concurrent use.
type schedule struct {
	start time.Time
	rate  float64 // operations per second; 0 is closed loop (as fast as workers go)
	limit int64   // tickets in all; 0 is no limit
	// fine sleeps out the last fineWindow before a slot, more precisely
	// than a Go timer; nil leaves the whole wait to the timer.
	fine func(until time.Time)
	next atomic.Int64
}

// fineWindow is how long before a slot the wait moves from a Go timer to
// fine. Go's timers fire up to a millisecond late in a process with little
// else to do, because the runtime's poller sleeps in whole milliseconds
// (golang/go#44343); a fine sleep oversleeps far less (BenchmarkSchedule
// shows both here). That lateness would be counted in every open-loop
// latency.
const fineWindow = 2 * time.Millisecond

// take returns the next ticket's intended start: now in closed loop, the
// ticket's slot in open loop, after waiting for it. It returns false when the
// tickets are used up or ctx is done first.
func (s *schedule) take(ctx context.Context) (time.Time, bool) {
	i := s.next.Add(1) - 1
	if s.limit > 0 && i >= s.limit {
		return time.Time{}, false
	}
	if s.rate <= 0 {
		return time.Now(), ctx.Err() == nil
	}
	at := s.slot(i)
	wait := time.Until(at)
	if s.fine != nil {
		wait -= fineWindow
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
	if s.fine != nil {
		s.fine(at)
	}
	return at, ctx.Err() == nil
}

// slot is the intended start of ticket i in open loop.
func (s *schedule) slot(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}
