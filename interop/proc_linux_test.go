package interop

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd get SIGTERM if the test binary dies without
// running its cleanups (a test timeout panics), so no peer outlives it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
