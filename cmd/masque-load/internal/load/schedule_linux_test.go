package load

import (
	"testing"
	"time"
)

// On Linux the fine sleep hands out each ticket at its slot or after it,
// never before, in order and none skipped. How close to the slot it wakes
// is BenchmarkSchedule's figure, not a test's: a busy machine wakes late.
func TestSchedulePrecise(t *testing.T) {
	s := &schedule{start: time.Now().Add(5 * time.Millisecond), rate: 1000, limit: 200, fine: preciseSleep}
	for i := range int64(200) {
		at, ok := s.take(t.Context())
		if now := time.Now(); !ok || !at.Equal(s.slot(i)) || now.Before(at) {
			t.Fatalf("ticket %d: at %v ok %v, handed out at %v", i, at.Sub(s.start), ok, now.Sub(s.start))
		}
	}
	if _, ok := s.take(t.Context()); ok {
		t.Fatal("a ticket past the limit")
	}
}
