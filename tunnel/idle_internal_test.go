package tunnel

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestWatchIdle checks the idle watchdog on a fake clock: traffic re-arms
// it, it fires exactly one idle period after the last traffic, and never
// after stop has returned.
func TestWatchIdle(t *testing.T) {
	const idle = time.Second
	// watch starts a watchdog whose firings are sent, as times since its
	// start, on the returned channel.
	watch := func(a *activity) (fired chan time.Duration, stop func() bool) {
		start := time.Now()
		fired = make(chan time.Duration, 10)
		return fired, a.watchIdle(idle, func() { fired <- time.Since(start) })
	}
	t.Run("fires after the last traffic", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var a activity
			fired, stop := watch(&a)
			defer stop()
			time.Sleep(700 * time.Millisecond)
			a.touch()
			time.Sleep(idle / 2) // past the first deadline: re-armed, not fired
			synctest.Wait()
			if len(fired) != 0 {
				t.Fatalf("fired at %v despite traffic at 700ms", <-fired)
			}
			time.Sleep(10 * idle)
			synctest.Wait()
			if len(fired) != 1 {
				t.Fatalf("fired %d times, want once", len(fired))
			}
			if got, want := <-fired, 700*time.Millisecond+idle; got != want {
				t.Fatalf("fired at %v, want %v", got, want)
			}
		})
	})
	t.Run("stopped before the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var a activity
			fired, stop := watch(&a)
			time.Sleep(idle / 2)
			stop()
			time.Sleep(10 * idle)
			synctest.Wait()
			if len(fired) != 0 {
				t.Fatalf("fired at %v after stop", <-fired)
			}
		})
	})
	t.Run("stopped after a re-arm", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var a activity
			fired, stop := watch(&a)
			time.Sleep(idle / 2)
			a.touch()
			time.Sleep(idle / 2) // the timer fires and re-arms
			synctest.Wait()
			stop()
			time.Sleep(10 * idle)
			synctest.Wait()
			if len(fired) != 0 {
				t.Fatalf("fired at %v after stop", <-fired)
			}
		})
	})
}
