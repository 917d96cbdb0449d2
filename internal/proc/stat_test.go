package proc

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want time.Duration
		ok   bool
	}{
		{"18785 (cat) R 18663 18663 12765 0 -1 4194304 104 0 0 0 7 3 0 0 20 0 1 0", 100 * time.Millisecond, true},
		// A command name with spaces and a ')' of its own.
		{"42 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 9 0 5", 3 * time.Second, true},
		{"42 (x) S 1 1 1 0 -1 0 0 0 0 0 250", 0, false},       // cut short
		{"42 x S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0", 0, false},     // no name
		{"42 (x) S 1 1 1 0 -1 0 0 0 0 0 1 -2 0 0", 0, false},  // negative
		{"42 (x) S 1 1 1 0 -1 0 0 0 0 0 1 two 0 0", 0, false}, // not a number
	} {
		got, err := parseStatCPU([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v, ok %v", tc.stat, got, err, tc.want, tc.ok)
		}
	}
}

// The test's own CPU time, as the kernel reports it, grows with a busy loop
// and never goes back. How much CPU the loop gets depends on what else runs,
// so the loop spins until the count moves by a clock tick; its 30 s bound
// only catches a count that never moves.
func TestCPUTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("read from /proc")
	}
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := before
	for deadline := time.Now().Add(30 * time.Second); after == before; {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stuck at %v through 30 s of busy loop", before)
		}
		if after, err = CPUTime(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after < before || (after-before)%clockTick != 0 {
		t.Errorf("CPU time went from %v to %v, want it to grow by whole clock ticks", before, after)
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Error("CPUTime of a process that does not exist: no error")
	}
}

// An exited process reports its whole CPU time.
func TestProcessCPUTimeAfterExit(t *testing.T) {
	p := start(t, context.Background(), "-then", "exit")
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if d, err := p.CPUTime(); err != nil || d <= 0 || d > 5*time.Second {
		t.Errorf("CPUTime() = %v, %v; want a small positive time", d, err)
	}
}

// parseStatCPU reads a file the kernel writes, but a command name is the
// program's to choose: whatever the line holds, it must not panic, and a
// time it returns is whole clock ticks, never negative.
func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("18785 (cat) R 18663 18663 12765 0 -1 4194304 104 0 0 0 7 3 0 0 20 0 1 0"))
	f.Add([]byte("42 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 9 0 5"))
	f.Add([]byte("42 ()) S 1 1 1 0 -1 0 0 0 0 0 9223372036854775807 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && (d < 0 || d%clockTick != 0) {
			t.Fatalf("parseStatCPU(%q) = %v", b, d)
		}
	})
}
