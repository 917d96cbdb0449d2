//go:build !linux

package load

import "time"

// preciseSleep is nil where no precise sleep is written: the schedule's Go
// timer waits the whole way.
var preciseSleep func(until time.Time)
