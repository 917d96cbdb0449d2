package load

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// In open loop each ticket is due at start + i/rate, and take waits for it.
func TestScheduleOpenLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := &schedule{start: start, rate: 1000}
		for i := range 5 {
			at, ok := s.take(t.Context())
			want := start.Add(time.Duration(i) * time.Millisecond)
			if !ok || !at.Equal(want) || time.Now().Before(want) {
				t.Fatalf("ticket %d: at %v ok %v, now %v; want at %v", i, at.Sub(start), ok, time.Since(start), want.Sub(start))
			}
		}
	})
}

// A worker that falls behind gets the ticket's intended start, not now: its
// wait counts in the latency (no coordinated omission).
func TestScheduleBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := &schedule{start: start, rate: 100}
		time.Sleep(time.Second) // a stall: 100 tickets are due
		for i := range 100 {
			at, ok := s.take(t.Context())
			if !ok || !at.Equal(start.Add(time.Duration(i)*10*time.Millisecond)) {
				t.Fatalf("ticket %d: at %v, ok %v", i, at.Sub(start), ok)
			}
		}
		if elapsed := time.Since(start); elapsed != time.Second {
			t.Errorf("took %v to hand out overdue tickets, want no wait", elapsed-time.Second)
		}
	})
}

// Workers sharing a schedule share its rate.
func TestScheduleShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := &schedule{start: start, rate: 200, limit: 400}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var taken int
		for range 10 {
			wg.Go(func() {
				for {
					if _, ok := s.take(t.Context()); !ok {
						return
					}
					mu.Lock()
					taken++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		// 400 tickets at 200/s: the last is due at 1.995 s.
		if taken != 400 || time.Since(start) != 1995*time.Millisecond {
			t.Errorf("%d tickets in %v, want 400 in 1.995s", taken, time.Since(start))
		}
	})
}

func TestScheduleClosedLoopLimit(t *testing.T) {
	s := &schedule{start: time.Now(), limit: 3}
	for i := range 3 {
		if _, ok := s.take(t.Context()); !ok {
			t.Fatalf("ticket %d refused", i)
		}
	}
	if _, ok := s.take(t.Context()); ok {
		t.Fatal("a fourth ticket with limit 3")
	}
}

func TestScheduleCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &schedule{start: time.Now().Add(time.Hour), rate: 1}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, ok := s.take(ctx); ok {
			t.Fatal("take succeeded after its context ended")
		}
		if _, ok := (&schedule{start: time.Now()}).take(ctx); ok {
			t.Fatal("closed-loop take succeeded after its context ended")
		}
	})
}
