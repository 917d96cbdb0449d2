//go:build !linux

package tunnel

import "syscall"

// bindOptions has nothing to set outside Linux: binding takes a port at once
// and only configured addresses can be bound.
func bindOptions(syscall.RawConn, bool, bool) error { return nil }
