package load

import (
	"time"

	"golang.org/x/sys/unix"
)

// preciseSleep sleeps until the given time in a nanosleep system call,
// which blocks only this goroutine's thread and wakes within about a tenth
// of a millisecond.
func preciseSleep(until time.Time) {
	for {
		d := time.Until(until)
		if d <= 0 {
			return
		}
		ts := unix.NsecToTimespec(d.Nanoseconds())
		if err := unix.Nanosleep(&ts, nil); err != unix.EINTR {
			return // EINTR: the runtime's preemption signal; sleep again
		}
	}
}
