package load

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies from 1 µs to a minute are kept to three significant digits: an
// error of at most 0.1% at every percentile, in about 40 KiB per histogram.
const (
	histMin    = 1                         // µs
	histMax    = int64(time.Minute / 1000) // µs
	histDigits = 3
)

// histogram records latencies. It is safe for concurrent use; recording
// takes a mutex, which costs far less than the tunnel operations it times.
type histogram struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // guarded by mu
}

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(histMin, histMax, histDigits)}
}

// record adds one latency; values outside the range are clamped into it, so
// that a stall of more than a minute still counts, as a minute.
func (h *histogram) record(d time.Duration) {
	us := min(max(d.Microseconds(), histMin), histMax)
	h.mu.Lock()
	_ = h.h.RecordValue(us) // in range: cannot fail
	h.mu.Unlock()
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// summary returns the histogram's count, mean, percentiles and maximum.
func (h *histogram) summary() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.h.TotalCount(),
		Mean:  h.h.Mean() / 1000,
		P50:   ms(h.h.ValueAtQuantile(50)),
		P90:   ms(h.h.ValueAtQuantile(90)),
		P99:   ms(h.h.ValueAtQuantile(99)),
		P999:  ms(h.h.ValueAtQuantile(99.9)),
		Max:   ms(h.h.Max()),
	}
}
