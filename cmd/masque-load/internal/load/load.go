// Package load puts a MASQUE proxy under load and measures it, for
// cmd/masque-load: many client connections, each with many tunnels, running
// echo or HTTP/3 operations (or just opening and closing tunnels) in closed
// loop or at a fixed rate, with latency histograms, an error breakdown by
// proxy status and the proxy's memory. The same work can run straight
// against the origins, so that the proxy's cost reads as a ratio.
package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what each tunnel does.
type Mode string

const (
	TCP   Mode = "tcp"   // CONNECT tunnels to a TCP echo: write Size bytes, read them back
	UDP   Mode = "udp"   // CONNECT-UDP tunnels to a UDP echo: one datagram of Size bytes there and back
	H3    Mode = "h3"    // CONNECT-UDP tunnels to an HTTP/3 origin: GET Size bytes
	Setup Mode = "setup" // open a CONNECT (or, with Config.UDP, CONNECT-UDP) tunnel and close it again, as fast as possible
	Idle  Mode = "idle"  // open Conns × Tunnels CONNECT (or CONNECT-UDP) tunnels, hold them idle, close them
)

// Modes lists the modes, for usage messages.
var Modes = []Mode{TCP, UDP, H3, Setup, Idle}

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q: want tcp, udp, h3, setup or idle", s)
}

// Targets are the origins' addresses (host:port).
type Targets struct{ TCP, UDP, H3 string }

// Config describes a run. Zero means "none" where not said otherwise.
type Config struct {
	Mode Mode
	// UDP makes Setup and Idle open CONNECT-UDP tunnels, not CONNECT.
	UDP bool
	// Name labels the run in the report, such as the proxy's URL.
	Name string
	// Connect opens one connection to the proxy (or Direct's), with its
	// own deadline in ctx.
	Connect func(ctx context.Context) (Conn, error)
	// Conns connections, each with Tunnels workers, run at once.
	Conns, Tunnels int
	// Rate is operations per second over all workers (open loop); zero
	// runs each worker's operations back to back (closed loop).
	Rate float64
	// Warmup is how long operations run before they count.
	Warmup time.Duration
	// Duration is how long operations count; zero is until Count ran.
	Duration time.Duration
	// Count is how many operations start in all, warm-up included; zero is
	// until Duration is over.
	Count int64
	// Size is the payload of an operation in bytes: what an echo sends,
	// what a GET fetches.
	Size int
	// Timeout bounds connecting, opening a tunnel and each operation.
	Timeout time.Duration
	Targets Targets
	// OriginTLS verifies the HTTP/3 origin.
	OriginTLS *tls.Config
	// ProxyPID is the proxy's process, whose memory the report shows (Linux
	// only); zero is not measured.
	ProxyPID int
	// Progress, if set, gets a progress line every second, rewritten in
	// place: give it a terminal.
	Progress io.Writer
}

func (c *Config) validate() error {
	switch {
	case c.Connect == nil:
		return errors.New("load: no Connect")
	case c.Conns < 1 || c.Tunnels < 1:
		return errors.New("need at least one connection and one tunnel per connection")
	case c.Rate < 0 || c.Count < 0 || c.Duration < 0 || c.Warmup < 0:
		return errors.New("rate, count and durations cannot be negative")
	case c.Duration == 0 && c.Count == 0:
		return errors.New("need a duration or a count")
	case c.Mode == Idle && c.Duration == 0:
		return errors.New("idle holds its tunnels for a duration: give one")
	case c.Timeout <= 0:
		return errors.New("need a timeout")
	case c.UDP && c.Mode != Setup && c.Mode != Idle:
		return errors.New("the tunnel kind is chosen only for setup and idle: the other modes name theirs")
	case (c.Mode == TCP || c.Mode == UDP) && c.Size < 8:
		return errors.New("echo payloads carry an 8-byte sequence number: size must be at least 8")
	case c.Mode == TCP && c.Size > maxTCPEcho:
		return fmt.Errorf("an echo is written whole before it is read back: size at most %d", maxTCPEcho)
	case c.Mode == UDP && c.Size > 1200:
		return errors.New("a UDP payload must fit a tunnel's datagram: size at most 1200")
	}
	return nil
}

// maxTCPEcho is the largest TCP echo: the tunnel's and sockets' buffers
// must hold it all, as an operation writes it before it reads.
const maxTCPEcho = 64 << 10

// target is where the mode's tunnels go.
func (c *Config) target() string {
	switch {
	case c.Mode == H3:
		return c.Targets.H3
	case c.Mode == UDP, c.UDP:
		return c.Targets.UDP
	}
	return c.Targets.TCP
}

// run is one Run's state, shared by its workers.
type run struct {
	cfg         *Config
	sched       *schedule
	measureFrom time.Time // end of warm-up
	open        atomic.Int64

	connect, setup, op *histogram
	lag                *histogram // open loop: actual start − intended start
	service            *histogram // open loop: end − actual start

	// Counted after warm-up only.
	ops, bytes atomic.Int64
	mu         sync.Mutex
	errs       map[string]int64  // guarded by mu
	samples    map[string]string // first error message per class; guarded by mu

	// Counted throughout, for the progress line.
	liveOps, liveErrs, liveBytes atomic.Int64
}

// Run connects Conns times and runs the workers until Duration is over or
// Count operations ran, or ctx is done. On ctx's end it still returns the
// report so far, with ctx's error. It fails early only when a connection
// cannot be made.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{
		cfg:     &cfg,
		connect: newHistogram(), setup: newHistogram(), op: newHistogram(),
		lag: newHistogram(), service: newHistogram(),
		errs: map[string]int64{}, samples: map[string]string{},
	}
	conns, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	closeConns := func() {
		for _, c := range conns {
			if err := c.Close(); err != nil {
				r.fail(fmt.Errorf("closing a connection: %w", err))
			}
		}
	}
	var rss procStats
	if cfg.ProxyPID != 0 {
		if rss.before, err = readProcStatus(cfg.ProxyPID); err != nil {
			closeConns()
			return nil, err
		}
	}

	start := time.Now()
	r.sched = &schedule{start: start, rate: cfg.Rate, limit: cfg.Count, fine: preciseSleep}
	r.measureFrom = start.Add(cfg.Warmup)
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		for range cfg.Tunnels {
			wg.Go(func() { r.work(stop, c) })
		}
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	r.wait(ctx, start, allDone)
	end := time.Now()
	openAtEnd := r.open.Load()
	if cfg.ProxyPID != 0 {
		rss.open, rss.errOpen = readProcStatus(cfg.ProxyPID)
	}
	cancel()
	<-allDone
	closeConns()
	if cfg.ProxyPID != 0 {
		time.Sleep(time.Second) // let the proxy notice the closes
		rss.after, rss.errAfter = readProcStatus(cfg.ProxyPID)
	}
	rep := r.report(end.Sub(r.measureFrom), openAtEnd)
	if cfg.ProxyPID != 0 {
		rep.Proxy = rss.summary(cfg.ProxyPID, openAtEnd)
	}
	return rep, ctx.Err()
}

// dial makes the connections at once, and closes them all if one fails.
func (r *run) dial(ctx context.Context) ([]Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conns := make([]Conn, r.cfg.Conns)
	errs := make([]error, r.cfg.Conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			t0 := time.Now()
			conns[i], errs[i] = r.cfg.Connect(ctx)
			if errs[i] == nil {
				r.connect.record(time.Since(t0))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for i, c := range conns {
			if errs[i] == nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("%s: %w", r.cfg.Name, firstErr(errs))
	}
	return conns, nil
}

// firstErr returns the first non-nil error: when every connection fails the
// same way, one message says it.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// wait returns when the run is over: its time is up, its operations have
// all run, or ctx is done. Meanwhile it writes the progress line.
func (r *run) wait(ctx context.Context, start time.Time, allDone <-chan struct{}) {
	var timeout <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Warmup + r.cfg.Duration)
		defer t.Stop()
		timeout = t.C
	}
	var tick <-chan time.Time
	if r.cfg.Progress != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
		defer fmt.Fprintln(r.cfg.Progress)
	}
	p := progress{last: start}
	for {
		select {
		case <-timeout:
			return
		case <-allDone:
			return
		case <-ctx.Done():
			return
		case now := <-tick:
			p.print(r, now, start)
		}
	}
}

// work is one worker: it runs operations on one tunnel of c until the
// schedule runs out or stop is done.
func (r *run) work(stop context.Context, c Conn) {
	switch r.cfg.Mode {
	case Setup:
		for {
			at, ok := r.next(stop)
			if !ok {
				return
			}
			t, err := r.openTunnel(stop, c)
			if err == nil {
				err = t.Close()
				r.open.Add(-1)
			}
			r.done(stop, r.setup, at, 0, err)
		}
	case Idle:
		if _, ok := r.sched.take(stop); !ok {
			return
		}
		now := time.Now()
		at := slot{intended: now, started: now}
		t, err := r.openTunnel(stop, c)
		r.done(stop, r.setup, at, 0, err)
		if err != nil {
			return
		}
		<-stop.Done()
		r.closeTunnel(t)
	default:
		var t tunnel
		for {
			at, ok := r.next(stop)
			if !ok {
				break
			}
			if t == nil {
				t0 := time.Now()
				var err error
				if t, err = r.openTunnel(stop, c); err != nil {
					r.done(stop, r.op, at, 0, err)
					continue
				}
				r.setup.record(time.Since(t0)) // counted in warm-up too: most tunnels open then
			}
			n, err := t.do(stop, r.cfg.Timeout)
			r.done(stop, r.op, at, n, err)
			// A lost datagram leaves a UDP tunnel usable; other failures
			// leave a tunnel in an unknown state: open another.
			if err != nil && (r.cfg.Mode != UDP || Class(err) != "timeout") {
				r.closeTunnel(t)
				t = nil
			}
		}
		if t != nil {
			r.closeTunnel(t)
		}
	}
}

// slot is when an operation was meant to start and when it did.
type slot struct{ intended, started time.Time }

// next takes the next ticket from the schedule. In open loop it records how
// late the worker starts it: the load generator's own delay (timer wake-up,
// scheduling, busy workers), which is part of each latency and sets its
// floor.
func (r *run) next(stop context.Context) (slot, bool) {
	at, ok := r.sched.take(stop)
	now := time.Now()
	if ok && r.cfg.Rate > 0 && !now.Before(r.measureFrom) {
		r.lag.record(now.Sub(at))
	}
	return slot{intended: at, started: now}, ok
}

// openTunnel opens a tunnel of the mode's kind on c.
func (r *run) openTunnel(stop context.Context, c Conn) (tunnel, error) {
	ctx, cancel := context.WithTimeout(stop, r.cfg.Timeout)
	defer cancel()
	var t tunnel
	switch {
	case r.cfg.Mode == UDP, r.cfg.Mode == H3, r.cfg.UDP:
		pc, err := c.ListenUDP(ctx, r.cfg.target())
		if err != nil {
			return nil, err
		}
		if r.cfg.Mode != H3 {
			t = newUDPEcho(pc, r.cfg.Size)
		} else {
			t = newH3Get(pc, r.cfg.Targets.H3, r.cfg.Size, r.cfg.OriginTLS)
		}
	default:
		conn, err := c.DialTCP(ctx, r.cfg.Targets.TCP)
		if err != nil {
			return nil, err
		}
		t = newTCPEcho(conn, r.cfg.Size)
	}
	r.open.Add(1)
	return t, nil
}

// closeTunnel closes t; a failure to close counts as an error, as the
// proxy should see every tunnel end cleanly.
func (r *run) closeTunnel(t tunnel) {
	if err := t.Close(); err != nil {
		r.fail(fmt.Errorf("closing a tunnel: %w", err))
	}
	r.open.Add(-1)
}

// done records an operation that was meant to start at at.intended, moved
// n bytes and ended with err: its latency from the intended start into h,
// and in open loop its service time, from the actual start. Operations cut
// short by the run's end are not counted; those that end in the warm-up
// only show in the progress line.
func (r *run) done(stop context.Context, h *histogram, at slot, n int64, err error) {
	if err != nil && stop.Err() != nil {
		return
	}
	now := time.Now()
	if err != nil {
		r.liveErrs.Add(1)
	} else {
		r.liveOps.Add(1)
		r.liveBytes.Add(n)
	}
	if now.Before(r.measureFrom) {
		return
	}
	if err != nil {
		r.fail(err)
		return
	}
	r.ops.Add(1)
	r.bytes.Add(n)
	h.record(now.Sub(at.intended))
	if r.cfg.Rate > 0 {
		r.service.record(now.Sub(at.started))
	}
}

// fail counts err under its class.
func (r *run) fail(err error) {
	class := Class(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[class]++
	if _, ok := r.samples[class]; !ok {
		r.samples[class] = err.Error()
	}
}
