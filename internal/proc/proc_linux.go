package proc

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd get SIGTERM if its parent dies without stopping
// it (a test timeout panics, a kill, a SIGPIPE on a closed stdout), so that
// no peer or proxy outlives the run and skews the next one.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
