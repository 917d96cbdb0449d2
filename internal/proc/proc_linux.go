package proc

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// dieWithParent makes cmd get SIGTERM if its parent dies without stopping
// it (a test timeout panics, a kill, a SIGPIPE on a closed stdout), so that
// no peer or proxy outlives the run and skews the next one.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// CPUTime is the user and system CPU time that process pid has used so far,
// from /proc/PID/stat, in the kernel's clock ticks of 10 ms (USER_HZ is 100
// on every Linux architecture Go supports).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}
