package load

import (
	"slices"
	"testing"
	"time"
)

// On Linux an open-loop worker starts close to its slot, not up to a
// millisecond late as it would after a Go timer alone.
func TestSchedulePrecise(t *testing.T) {
	s := &schedule{start: time.Now().Add(5 * time.Millisecond), rate: 1000, limit: 200, fine: preciseSleep}
	var late []time.Duration
	for {
		at, ok := s.take(t.Context())
		if !ok {
			break
		}
		late = append(late, time.Since(at))
	}
	slices.Sort(late)
	if late[0] < 0 {
		t.Fatalf("a ticket was handed out %v before its slot", -late[0])
	}
	if p50 := late[len(late)/2]; p50 > 500*time.Microsecond {
		t.Errorf("workers start %v after their slot at the median (p90 %v), want < 0.5 ms", p50, late[len(late)*9/10])
	}
}
