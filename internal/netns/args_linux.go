package netns

import (
	"context"
	"os/exec"
)

// String is the namespace's name, for messages.
func (n *NS) String() string { return n.Name }

// Args returns what runs program path with args inside n, for exec.Command
// or internal/proc.Start: ip netns exec replaces itself with the program,
// which keeps ip's process, so signals sent to it reach the program.
func (n *NS) Args(path string, args ...string) (name string, withArgs []string) {
	return "ip", append([]string{"netns", "exec", n.Name, path}, args...)
}

// Command is Args as an *exec.Cmd, ended with ctx.
func (n *NS) Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	name, args := n.Args(path, args...)
	return exec.CommandContext(ctx, name, args...)
}
