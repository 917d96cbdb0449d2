package load

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 10000; i++ { // 1 µs … 10 ms, uniformly
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"mean", s.Mean, 5.0005},
		{"p50", s.P50, 5},
		{"p90", s.P90, 9},
		{"p99", s.P99, 9.9},
		{"p99.9", s.P999, 9.99},
		{"max", s.Max, 10},
	} {
		if math.Abs(c.got-c.want) > c.want*0.001+0.001 { // three significant digits
			t.Errorf("%s = %g ms, want %g", c.name, c.got, c.want)
		}
	}
	if s.Count != 10000 {
		t.Errorf("count %d, want 10000", s.Count)
	}
}

func TestHistogramEmpty(t *testing.T) {
	if s := newHistogram().summary(); s != (Latency{}) {
		t.Errorf("empty histogram summarised as %+v", s)
	}
}

// Values out of range still count: nothing recorded is lost.
func TestHistogramClamps(t *testing.T) {
	h := newHistogram()
	h.record(0)
	h.record(-time.Second)
	h.record(2 * time.Hour)
	s := h.summary()
	if s.Count != 3 {
		t.Fatalf("count %d, want 3", s.Count)
	}
	if s.P50 != 0.001 {
		t.Errorf("p50 %g ms, want the 1 µs floor", s.P50)
	}
	if math.Abs(s.Max-60000) > 60 {
		t.Errorf("max %g ms, want the one-minute ceiling", s.Max)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := newHistogram()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if n := h.summary().Count; n != 8000 {
		t.Errorf("count %d, want 8000", n)
	}
}
