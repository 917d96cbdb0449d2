package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masqued/masqued/cmd/masque-load/internal/load"
	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

func TestMain(m *testing.M) { testnet.MainHTTP2(m) }

// runLoad runs masque-load with args and returns stdout, stderr and the
// error run returned. The runs here take a few seconds at most; the 30 s
// deadline only catches one that hangs, and is reported as such.
func runLoad(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	if ctx.Err() != nil {
		t.Errorf("masque-load %q was still running at the 30 s hang bound", args)
	}
	return out.String(), errOut.String(), err
}

// TestSmoke runs each mode for two seconds through masqued's proxy (HTTP/3,
// HTTP/2 and HTTP/1.1 fronts, in this process) against the tool's own
// origins, as `make test`'s smoke run. The runs go at once, not as parallel
// subtests, which go test would run two at a time on two cores. It checks
// that tunnels open and work without errors, not how many per second: on a
// busy machine the open-loop run falls behind its rate, which the report
// shows (ops/s, start lag) and `make load` is for.
func TestSmoke(t *testing.T) {
	p := proxytest.Start(t, testnet.IPv4, true)
	cases := []struct {
		name  string
		flags []string
		loadRun
	}{
		{name: "tcp over h3", flags: []string{"-mode", "tcp", "-via", "h3"}},
		{name: "tcp over h1", flags: []string{"-mode", "tcp", "-via", "h1"}},
		{name: "udp over h2", flags: []string{"-mode", "udp", "-via", "h2"}},
		{name: "h3 over h3 with baseline", flags: []string{"-mode", "h3", "-via", "h3", "-baseline"}},
		{name: "setup over h2 at 100/s", flags: []string{"-mode", "setup", "-via", "h2", "-rate", "100"}},
		// The proxy runs in this process, so its memory is ours.
		{name: "idle over auto", flags: []string{"-mode", "idle", "-proxy-pid", strconv.Itoa(os.Getpid())}},
		{name: "idle CONNECT-UDP over h3", flags: []string{"-mode", "idle", "-tunnel", "udp", "-via", "h3"}},
		{name: "setup CONNECT-UDP over h2", flags: []string{"-mode", "setup", "-tunnel", "udp", "-via", "h2", "-rate", "100"}},
	}
	var runs []*loadRun
	for i := range cases {
		c := &cases[i]
		c.loadRun.args = append([]string{"-proxy", p.URL, "-ca", p.CertFile, "-c", "2", "-t", "2", "-d", "2s", "-warmup", "0s", "-json"}, c.flags...)
		runs = append(runs, &c.loadRun)
	}
	runAtOnce(t, runs)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := c.cleanReport(t)
			switch rep.Mode {
			case load.H3:
				if rep.Baseline == nil || rep.Baseline.Ops == 0 || rep.Ratios == nil || rep.Ratios.OpsPerSec == 0 {
					t.Errorf("no baseline or ratios: %s", c.stdout)
				}
			case load.Setup:
				// Every tunnel set up is counted and closed again (at most
				// one per worker is in flight at the end); the open loop
				// records each one's start lag.
				if rep.Setup.Count != rep.Ops || rep.OpenAtEnd > 4 || rep.Lag.Count == 0 {
					t.Errorf("%d tunnels, %d setup latencies, %d start lags, %d open at the end", rep.Ops, rep.Setup.Count, rep.Lag.Count, rep.OpenAtEnd)
				}
			case load.Idle:
				if rep.OpenAtEnd != 4 || (!rep.UDP && (rep.Proxy == nil || rep.Proxy.RSSOpenKiB == 0)) {
					t.Errorf("%d tunnels open, proxy %+v", rep.OpenAtEnd, rep.Proxy)
				}
			}
			if want := strings.Contains(c.name, "CONNECT-UDP"); rep.UDP != want {
				t.Errorf("report says CONNECT-UDP %v, want %v", rep.UDP, want)
			}
		})
	}
}

// loadRun is one run of masque-load in runAtOnce: its arguments, then what
// it returned.
type loadRun struct {
	args           []string
	stdout, stderr string
	err            error
}

// runAtOnce runs masque-load for every run at the same time, not as
// parallel subtests (which go test would run two at a time on two cores),
// and waits for them all.
func runAtOnce(t *testing.T, runs []*loadRun) {
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() { r.stdout, r.stderr, r.err = runLoad(t, r.args...) })
	}
	wg.Wait()
}

// cleanReport checks that the run succeeded with a JSON report of some
// operations and tunnels set up, none failed, and returns the report.
func (r *loadRun) cleanReport(t *testing.T) load.Report {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%v\n%s%s", r.err, r.stdout, r.stderr)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Ops == 0 || rep.Errors != 0 || rep.Setup.Count == 0 {
		t.Fatalf("%d ops, %d setups, errors %v", rep.Ops, rep.Setup.Count, rep.ErrorSamples)
	}
	return rep
}

// The text report is the default.
func TestTextReport(t *testing.T) {
	p := proxytest.StartH3(t, testnet.IPv4, true)
	stdout, stderr, err := runLoad(t, "-proxy", p.URL, "-ca", p.CertFile, "-mode", "tcp", "-n", "200", "-c", "1", "-t", "2", "-warmup", "0s")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{p.URL + ": tcp, 1 connections × 2 tunnels, closed loop", "200 ops", "p99.9", "echo"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("progress or noise on stderr, which is not a terminal: %q", stderr)
	}
}

// Bad flags and unusable proxies end the run with a message that says what
// is wrong and a non-zero exit (and runLoad's bound catches one that hangs).
func TestBadInput(t *testing.T) {
	p := proxytest.StartH3(t, testnet.IPv4, true)
	closedTCP := closedPort(t, "tcp")
	closedUDP := closedPort(t, "udp")
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool   // exit 2
		want  string // in the error
	}{
		{"no proxy", nil, true, "-proxy is required"},
		{"bad mode", []string{"-proxy", p.URL, "-mode", "bulk"}, true, `unknown mode "bulk"`},
		{"bad via", []string{"-proxy", p.URL, "-via", "h4"}, true, `unknown transport "h4"`},
		{"no workers", []string{"-proxy", p.URL, "-c", "0"}, true, "-c and -t must be at least 1"},
		{"no end", []string{"-proxy", p.URL, "-d", "0"}, true, "give -d, -n or both"},
		{"negative rate", []string{"-proxy", p.URL, "-rate", "-5"}, true, "cannot be negative"},
		{"stray argument", []string{"-proxy", p.URL, "tcp"}, true, "unexpected arguments"},
		{"unknown flag", []string{"-proxy", p.URL, "-bogus"}, true, "bogus"},
		{"three proxies", []string{"-proxy", p.URL + "," + p.URL + "," + p.URL}, true, "a chain is a relay and an egress proxy, not 3"},
		{"CAs miscounted", []string{"-proxy", p.URL + "," + p.URL, "-ca", "a.pem,b.pem,c.pem"}, true, "-ca has 3 entries for the 2 proxies"},
		{"missing CA file", []string{"-proxy", p.URL, "-ca", "/nonexistent.pem"}, false, "-ca: open /nonexistent.pem"},
		{"untrusted proxy", []string{"-proxy", p.URL, "-via", "h3"}, false, "certificate signed by unknown authority"},
		{"bad proxy URL", []string{"-proxy", "ftp://x", "-ca", p.CertFile}, false, "ftp://x"},
		{"refused over TCP", []string{"-proxy", "https://" + closedTCP, "-via", "h2"}, false, "connection refused"},
		{"silent over QUIC", []string{"-proxy", "https://" + closedUDP, "-via", "h3", "-timeout", "500ms"}, false, "deadline exceeded"},
		{"target refuses", []string{"-proxy", p.URL, "-ca", p.CertFile, "-tcp-target", closedTCP, "-d", "300ms"}, false, "no operation succeeded"},
		{"bad tunnel kind", []string{"-proxy", p.URL, "-mode", "idle", "-tunnel", "sctp"}, true, `-tunnel is tcp or udp, not "sctp"`},
		{"tunnel kind for tcp mode", []string{"-proxy", p.URL, "-mode", "tcp", "-tunnel", "udp"}, true, "-tunnel is for -mode setup and idle"},
		{"UDP payload too large", []string{"-proxy", p.URL, "-ca", p.CertFile, "-mode", "udp", "-size", "5000"}, false, "size at most 1200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runLoad(t, append([]string{"-warmup", "0s", "-d", "1s"}, tc.args...)...)
			if err == nil {
				t.Fatalf("no error\n%s%s", stdout, stderr)
			}
			var usage *cli.UsageError
			if errors.As(err, &usage) != tc.usage {
				t.Errorf("usage error: %v, want %v (%v)", !tc.usage, tc.usage, err)
			}
			if !strings.Contains(err.Error(), tc.want) && !strings.Contains(stderr, tc.want) {
				t.Errorf("error %q (stderr %q) does not say %q", err, stderr, tc.want)
			}
		})
	}
}

// closedPort returns a loopback address with no listener on it.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	var addr string
	if network == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	} else {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr().String()
		c.Close()
	}
	return addr
}

// SIGINT (a cancelled context) ends a run long before its -d, with the
// report so far.
func TestInterrupt(t *testing.T) {
	p := proxytest.StartH3(t, testnet.IPv4, true)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out, errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-proxy", p.URL, "-ca", p.CertFile, "-mode", "tcp", "-c", "1", "-t", "2", "-d", "1h", "-warmup", "0s"}, &out, &errOut)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // only catches a run that ignores the interrupt: it stops a moment after it
		t.Fatal("still running 30 s after the interrupt")
	}
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("error %v", err)
	}
	if !strings.Contains(out.String(), " ops (") {
		t.Errorf("no report:\n%s", out.String())
	}
}
