//go:build !linux

package proc

import (
	"errors"
	"os/exec"
	"time"
)

// dieWithParent does nothing where the kernel has no parent-death signal.
func dieWithParent(*exec.Cmd) {}

// CPUTime is not written for this system.
func CPUTime(int) (time.Duration, error) {
	return 0, errors.New("proc: CPU time of a running process is only read on Linux")
}
