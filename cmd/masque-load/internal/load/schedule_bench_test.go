package load

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkSchedule reports how late an open-loop worker starts after its
// slot, at the median and the 99th percentile, with the fine sleep (where
// there is one) and with a Go timer alone: the lateness that the fine sleep
// keeps out of every open-loop latency. It ticks at 1000 a second, so each
// op takes a millisecond.
func BenchmarkSchedule(b *testing.B) {
	for _, bc := range []struct {
		name string
		fine func(time.Time)
	}{{"fine", preciseSleep}, {"timer", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			s := &schedule{start: time.Now().Add(5 * time.Millisecond), rate: 1000, fine: bc.fine}
			var late []time.Duration
			for b.Loop() {
				at, ok := s.take(b.Context())
				if !ok {
					b.Fatal("ticket refused")
				}
				late = append(late, time.Since(at))
			}
			slices.Sort(late)
			b.ReportMetric(float64(late[len(late)/2])/1e3, "late-p50-µs")
			b.ReportMetric(float64(late[len(late)*99/100])/1e3, "late-p99-µs")
		})
	}
}
