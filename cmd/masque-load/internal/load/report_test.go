package load

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/client/proxyconn"
)

// testRun is a run whose counts the test sets.
func testRun(mode Mode) *run {
	cfg := &Config{Mode: mode, Name: "https://proxy.example:443", Conns: 2, Tunnels: 3, Warmup: time.Second}
	return &run{
		cfg:     cfg,
		connect: newHistogram(), setup: newHistogram(), op: newHistogram(),
		lag: newHistogram(), service: newHistogram(),
		errs: map[string]int64{}, samples: map[string]string{},
	}
}

func TestReport(t *testing.T) {
	r := testRun(TCP)
	r.ops.Store(2000)
	r.bytes.Store(4_000_000)
	for range 2 {
		r.connect.record(3 * time.Millisecond)
	}
	r.setup.record(time.Millisecond)
	r.op.record(500 * time.Microsecond)
	r.fail(&proxyconn.ProxyError{StatusCode: 502, ProxyStatus: "masqued; error=connection_refused"})
	r.fail(&proxyconn.ProxyError{StatusCode: 502, ProxyStatus: "masqued; error=connection_refused"})
	r.fail(errMismatch)

	rep := r.report(2*time.Second, 6)
	if rep.OpsPerSec != 1000 || rep.Mbps != 16 || rep.Errors != 3 || rep.OpenAtEnd != 6 {
		t.Errorf("%.1f ops/s, %.1f Mbit/s, %d errors, %d open; want 1000, 16, 3, 6", rep.OpsPerSec, rep.Mbps, rep.Errors, rep.OpenAtEnd)
	}
	if rep.ErrorsByClass["502 connection_refused"] != 2 || rep.ErrorsByClass["mismatch"] != 1 {
		t.Errorf("errors by class %v", rep.ErrorsByClass)
	}

	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"tcp, 2 connections × 3 tunnels, closed loop, 2.0s measured after 1s warm-up",
		"2000 ops (1000.0/s), 3 errors, 16.0 Mbit/s",
		"error 502 connection_refused: 2, such as: proxy answered 502 Bad Gateway (masqued; error=connection_refused)",
		"error mismatch: 1",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if !strings.Contains(b.String(), "echo") || !strings.Contains(b.String(), "0.500") {
		t.Errorf("report lacks the echo latency row:\n%s", b.String())
	}
}

func TestReportBaseline(t *testing.T) {
	proxied, direct := testRun(Setup), testRun(Setup)
	proxied.ops.Store(500)
	direct.ops.Store(2000)
	proxied.setup.record(2 * time.Millisecond)
	direct.setup.record(500 * time.Microsecond)
	rep := proxied.report(time.Second, 0)
	rep.SetBaseline(direct.report(time.Second, 0))
	if r := rep.Ratios; r.OpsPerSec != 0.25 || r.SetupP50 != 4 || r.Mbps != 0 {
		t.Errorf("ratios %+v, want ops/s 0.25, setup p50 4, throughput 0 (none moved)", r)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "proxy ÷ direct: ops/s 0.25x") {
		t.Errorf("no ratios in\n%s", b.String())
	}

	// The JSON names are an interface: scripts read them.
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	setup, _ := m["setup"].(map[string]any)
	ratios, _ := m["ratios"].(map[string]any)
	if m["ops_per_s"] != 500.0 || setup["p99_ms"] != 2.0 || ratios["setup_p50"] != 4.0 || m["baseline"] == nil {
		t.Errorf("JSON %s", out)
	}
}

func TestParseProcStatus(t *testing.T) {
	s, err := parseProcStatus([]byte("Name:\tmasqued\nVmRSS:\t   12345 kB\nThreads:\t7\n"))
	if err != nil || s != (procStatus{rssKiB: 12345, threads: 7}) {
		t.Errorf("got %+v, %v", s, err)
	}
	if _, err := parseProcStatus([]byte("Name:\tkthreadd\nThreads:\t1\n")); err == nil {
		t.Error("no error for a status without VmRSS (a kernel thread's)")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	self, err := readProcStatus(os.Getpid())
	if err != nil || self.rssKiB <= 0 || self.threads <= 0 {
		t.Errorf("own status %+v, %v", self, err)
	}
}

func TestProxyStatsPerTunnel(t *testing.T) {
	s := procStats{before: procStatus{10000, 5}, open: procStatus{30000, 6}, after: procStatus{20000, 5}}
	p := s.summary(42, 1000)
	if p.KiBPerTunnel != 20 || p.RSSAfterKiB != 20000 || p.ThreadsOpen != 6 {
		t.Errorf("%+v", p)
	}
}
