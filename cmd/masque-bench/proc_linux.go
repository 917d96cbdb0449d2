package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd get SIGTERM if the bench dies without stopping it
// (a SIGPIPE on a closed stdout, a kill), so no proxy outlives the bench and
// skews the next run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
