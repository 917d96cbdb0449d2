package proxyconn

import (
	"context"
	"sync"
	"time"
)

// ReadDeadline turns a read deadline into a context that a read waits on,
// for tunnels whose packets arrive on a channel. The zero value is not
// ready: call Init.
type ReadDeadline struct {
	mu     sync.Mutex // guards the fields below
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer
}

// Init makes d ready; parent ends every context d returns.
func (d *ReadDeadline) Init(parent context.Context) {
	d.parent = parent
	d.ctx, d.cancel = context.WithCancel(parent)
}

// Context returns the context the next read waits on.
func (d *ReadDeadline) Context() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// Set makes the current and later contexts end at t; the zero time clears
// the deadline.
func (d *ReadDeadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.ctx.Err() != nil { // an earlier deadline fired: start afresh
		d.ctx, d.cancel = context.WithCancel(d.parent)
	}
	switch {
	case t.IsZero():
	case time.Until(t) <= 0:
		d.cancel()
	default:
		d.timer = time.AfterFunc(time.Until(t), d.cancel)
	}
}
