package load

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startOrigins starts the origins on 127.0.0.1 until the test ends.
func startOrigins(t *testing.T) *Origins {
	t.Helper()
	o, err := StartOrigins("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("closing origins: %v", err)
		}
	})
	return o
}

// directConfig is a run straight to the origins, which needs no proxy: the
// workers, schedule and report are the same.
func directConfig(o *Origins, mode Mode) Config {
	return Config{
		Mode: mode, Name: "direct",
		Connect: func(context.Context) (Conn, error) { return Direct{}, nil },
		Conns:   2, Tunnels: 2,
		Duration: 300 * time.Millisecond,
		Size:     100, Timeout: 5 * time.Second,
		Targets:   Targets{TCP: o.TCP, UDP: o.UDP, H3: o.H3},
		OriginTLS: o.TLS,
	}
}

func TestRunModes(t *testing.T) {
	o := startOrigins(t)
	for _, mode := range Modes {
		t.Run(string(mode), func(t *testing.T) {
			rep, err := Run(t.Context(), directConfig(o, mode))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Ops == 0 || rep.Errors != 0 {
				t.Fatalf("%d ops, %d errors: %v", rep.Ops, rep.Errors, rep.ErrorSamples)
			}
			switch mode {
			case TCP, UDP:
				if rep.Bytes != rep.Ops*200 || rep.Op.Count != rep.Ops {
					t.Errorf("%d bytes, %d latencies for %d echoes of 100 bytes", rep.Bytes, rep.Op.Count, rep.Ops)
				}
			case H3:
				if rep.Bytes != rep.Ops*100 {
					t.Errorf("%d bytes for %d GETs of 100", rep.Bytes, rep.Ops)
				}
			case Setup:
				if rep.Setup.Count != rep.Ops || rep.OpenAtEnd > 4 {
					t.Errorf("%d setup latencies for %d ops, %d open at the end", rep.Setup.Count, rep.Ops, rep.OpenAtEnd)
				}
			case Idle:
				if rep.Ops != 4 || rep.OpenAtEnd != 4 {
					t.Errorf("idle opened %d tunnels, %d open at the end; want 4", rep.Ops, rep.OpenAtEnd)
				}
			}
		})
	}
}

// -n ops in closed loop: exactly that many, however many workers.
func TestRunCount(t *testing.T) {
	cfg := directConfig(startOrigins(t), TCP)
	cfg.Duration, cfg.Count = 0, 500
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops != 500 || rep.Op.Count != 500 {
		t.Errorf("%d ops, %d latencies; want 500", rep.Ops, rep.Op.Count)
	}
}

// Open loop records, for each operation, its start lag (part of its
// latency) and its service time (no longer than its latency). How closely
// the workers keep to the rate is the schedule tests' matter, on a fake
// clock: here the machine may be busy.
func TestRunRate(t *testing.T) {
	cfg := directConfig(startOrigins(t), Setup)
	cfg.Rate, cfg.Duration, cfg.Count = 200, 0, 60
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops != 60 || rep.Setup.Count != 60 {
		t.Errorf("%d ops, %d setup latencies; want 60", rep.Ops, rep.Setup.Count)
	}
	if rep.Lag.Count != rep.Ops || rep.Lag.P50 > rep.Setup.P50 {
		t.Errorf("start lag %+v for setup %+v: one per op, and part of each", rep.Lag, rep.Setup)
	}
	if rep.Service.Count != rep.Ops || rep.Service.Max > rep.Setup.Max {
		t.Errorf("service %+v for setup %+v: one per op, and no longer", rep.Service, rep.Setup)
	}
}

// Operations that end in the warm-up do not count. The last ten tickets are
// due at or after the warm-up's end, so they count however slow the
// machine; the first is due at the start and ends a second before it does,
// which leaves it a thousand times the millisecond it takes.
func TestRunWarmup(t *testing.T) {
	cfg := directConfig(startOrigins(t), Setup)
	cfg.Rate, cfg.Warmup, cfg.Duration, cfg.Count = 100, time.Second, 0, 110
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops < 10 || rep.Ops == 110 || rep.Setup.Count != rep.Ops {
		t.Errorf("%d ops counted of 110, %d setup latencies; want the warm-up's left out", rep.Ops, rep.Setup.Count)
	}
}

// The progress line is rewritten in place, and says when it is in the
// warm-up.
func TestProgress(t *testing.T) {
	r := testRun(TCP)
	var line strings.Builder
	r.cfg.Progress = &line
	start := time.Now()
	r.measureFrom = start.Add(r.cfg.Warmup)
	p := progress{last: start}
	r.liveOps.Store(150)
	p.print(r, start.Add(time.Second/2), start)
	if got := line.String(); !strings.HasPrefix(got, "\r\x1b[K") || !strings.Contains(got, " 300.0 ops/s") || !strings.HasSuffix(got, " (warm-up)") {
		t.Errorf("progress in the warm-up %q", got)
	}
	line.Reset()
	r.liveOps.Store(250)
	p.print(r, start.Add(3*time.Second/2), start)
	if got := line.String(); !strings.Contains(got, " 100.0 ops/s") || strings.Contains(got, "warm-up") {
		t.Errorf("progress after the warm-up %q", got)
	}
}

// A target that refuses shows in the breakdown, and the run still ends on
// time.
func TestRunErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	cfg := directConfig(startOrigins(t), TCP)
	cfg.Targets.TCP = closed
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ops != 0 || rep.Errors == 0 || rep.ErrorsByClass["refused"] != rep.Errors {
		t.Errorf("%d ops, errors %v", rep.Ops, rep.ErrorsByClass)
	}
}

// A connection that fails fails the run, and the ones made are closed.
func TestRunConnectFails(t *testing.T) {
	var n, closed atomic.Int64
	cfg := directConfig(startOrigins(t), TCP)
	cfg.Conns = 4
	cfg.Connect = func(context.Context) (Conn, error) {
		if n.Add(1) == 3 {
			return nil, errors.New("no route to proxy")
		}
		return &countClose{&closed}, nil
	}
	_, err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "direct: no route to proxy") {
		t.Fatalf("error %v", err)
	}
	if closed.Load() != 3 {
		t.Errorf("%d of 3 connections closed", closed.Load())
	}
}

type countClose struct{ n *atomic.Int64 }

func (c *countClose) DialTCP(context.Context, string) (net.Conn, error) {
	return nil, errors.New("unused")
}
func (c *countClose) ListenUDP(context.Context, string) (net.PacketConn, error) {
	return nil, errors.New("unused")
}
func (c *countClose) Close() error { c.n.Add(1); return nil }

// Cancelling the run's context ends it long before its Duration, with what
// was measured.
func TestRunCancel(t *testing.T) {
	cfg := directConfig(startOrigins(t), Idle)
	cfg.Duration = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(ctx, cfg)
		done <- result{rep, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second): // only catches a run that ignores its context: it stops a moment after it
		t.Fatal("still running 30 s after the context ended")
	}
	if !errors.Is(res.err, context.DeadlineExceeded) || res.rep == nil || res.rep.Ops != 4 {
		t.Fatalf("report %v, error %v", res.rep, res.err)
	}
}

func TestConfigValidate(t *testing.T) {
	o := startOrigins(t)
	for name, change := range map[string]func(*Config){
		"no connections":  func(c *Config) { c.Conns = 0 },
		"no tunnels":      func(c *Config) { c.Tunnels = 0 },
		"negative rate":   func(c *Config) { c.Rate = -1 },
		"no end":          func(c *Config) { c.Duration, c.Count = 0, 0 },
		"idle by count":   func(c *Config) { c.Mode, c.Duration, c.Count = Idle, 0, 10 },
		"no timeout":      func(c *Config) { c.Timeout = 0 },
		"short echo":      func(c *Config) { c.Size = 7 },
		"large datagram":  func(c *Config) { c.Mode, c.Size = UDP, 1201 },
		"large echo":      func(c *Config) { c.Size = 64<<10 + 1 },
		"no connect func": func(c *Config) { c.Connect = nil },
	} {
		cfg := directConfig(o, TCP)
		change(&cfg)
		if _, err := Run(t.Context(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Idle echo connections hold no pipes: io.Copy between TCP conns splices
// through one per blocked copy, which ran 10,000 idle tunnels out of file
// descriptors.
func TestEchoHoldsNoPipe(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc")
	}
	o := startOrigins(t)
	before := pipes(t)
	for range 50 {
		c, err := net.Dial("tcp", o.TCP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := pipes(t) - before; n > 4 {
		t.Errorf("%d more pipes open with 50 idle echo connections", n)
	}
}

// pipes counts this process's open pipes.
func pipes(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}
