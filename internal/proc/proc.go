// Package proc runs masqued's programs and its peers' as child processes,
// for the tests and the benchmark that need them as real processes: the
// interop tests run masque-go's peer program (a Go module of its own, so it
// cannot be linked in), and cmd/masque-bench runs that peer and masqued
// itself. It builds a program from the repository, starts it so that it does
// not outlive its parent, hands over the lines it prints on start (such as
// "listening on ADDR"), and stops it with SIGTERM, then SIGKILL.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// killDelay is how long a process has after SIGTERM before SIGKILL;
	// it outlasts masqued's default 10s drain.
	killDelay = 15 * time.Second
	// lineTimeout is how long Line waits for a line.
	lineTimeout = 30 * time.Second
)

// Process is a running program. Its output is kept for error messages, and
// its first stdout lines are handed to Line. Its methods are safe for
// concurrent use.
type Process struct {
	name   string
	cancel context.CancelFunc
	stdout *output
	stderr *output
	pid    int
	done   chan struct{}    // closed when the process has exited
	err    error            // Wait's error, set before done is closed
	state  *os.ProcessState // set before done is closed
}

// Start starts path with args. The process gets SIGTERM when ctx is done or
// at Stop, SIGKILL if it has not exited 15 seconds later, and SIGTERM if the
// caller dies without stopping it (on Linux). The caller must call Stop.
func Start(ctx context.Context, path string, args ...string) (*Process, error) {
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = killDelay
	dieWithParent(cmd)
	p := &Process{
		name:   filepath.Base(path),
		cancel: cancel,
		stdout: &output{lines: make(chan string, 8)},
		stderr: &output{},
		done:   make(chan struct{}),
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		p.name += " " + args[0] // a subcommand
	}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p.pid = cmd.Process.Pid
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
	}()
	return p, nil
}

// CPUTime is the user and system CPU time the process has used so far: all
// of it once it has exited; while it runs, what the kernel reports (Linux
// only).
func (p *Process) CPUTime() (time.Duration, error) {
	select {
	case <-p.done:
		return p.state.UserTime() + p.state.SystemTime(), nil
	default:
		return CPUTime(p.pid)
	}
}

// Name is the program's file name and its subcommand, if any.
func (p *Process) Name() string { return p.name }

// Line waits up to 30 seconds for the process's next stdout line, which must
// start with prefix, and returns the rest of it.
func (p *Process) Line(prefix string) (string, error) {
	check := func(l string) (string, error) {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return rest, nil
		}
		return "", fmt.Errorf("%s printed %q, want a line starting with %q", p.name, l, prefix)
	}
	timer := time.NewTimer(lineTimeout)
	defer timer.Stop()
	select {
	case l := <-p.stdout.lines:
		return check(l)
	case <-p.done:
		// Its output is all written by now; a last line may be waiting.
		select {
		case l := <-p.stdout.lines:
			return check(l)
		default:
		}
		return "", fmt.Errorf("%s exited before printing %q: %w; %s", p.name, prefix, p.err, p.Output())
	case <-timer.C:
		return "", fmt.Errorf("%s printed no %q line in %v; %s", p.name, prefix, lineTimeout, p.Output())
	}
}

// Wait waits for the process to exit by itself and returns nil if it
// exited 0.
func (p *Process) Wait() error {
	<-p.done
	if p.err != nil {
		return fmt.Errorf("%s: %w; %s", p.name, p.err, p.Output())
	}
	return nil
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM unless the process has exited, waits for it, and
// returns nil if it exited 0, by itself or after Stop's SIGTERM. A process
// that ctx ended shows ctx's error. Stop may be called more than once.
func (p *Process) Stop() error {
	p.cancel()
	<-p.done
	// After Stop's SIGTERM, a clean exit shows as the context's error.
	if p.err != nil && !errors.Is(p.err, context.Canceled) {
		return fmt.Errorf("%s: %w; %s", p.name, p.err, p.Output())
	}
	return nil
}

// Stderr returns what the process has written to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Output returns what the process has written so far, for messages.
func (p *Process) Output() string {
	return fmt.Sprintf("its stdout:\n%s\nits stderr:\n%s", p.stdout, p.stderr)
}

// output collects a process's output, written by exec's copying goroutine.
// Its first lines also go to lines, if set, while there is room; later ones
// are only collected.
type output struct {
	lines chan string

	mu      sync.Mutex // guards the fields below
	all     bytes.Buffer
	partial []byte // the current line, up to its newline
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(b)
	if o.lines == nil {
		return len(b), nil
	}
	o.partial = append(o.partial, b...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		select {
		case o.lines <- string(o.partial[:i]):
		default:
		}
		o.partial = o.partial[i+1:]
	}
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}

// modulePath is masqued's module, whose go.mod marks the repository root.
const modulePath = "github.com/masqued/masqued"

// RepoRoot returns masqued's repository root: the nearest directory at or
// above the working directory whose go.mod is masqued's module (so a nested
// module, such as a peer's, is passed over).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declares(b, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s at or above the working directory: run inside masqued's repository", modulePath)
		}
		dir = parent
	}
}

// declares reports whether gomod's module directive names module.
func declares(gomod []byte, module string) bool {
	for line := range strings.Lines(string(gomod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == module
		}
	}
	return false
}

// GoBuild builds the main package in dir, a path relative to the repository
// root that may lie in a module of its own, into the file out. Its error
// includes what the build printed.
func GoBuild(ctx context.Context, dir, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if out, err = filepath.Abs(out); err != nil { // go build -C would take it from dir
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join(root, dir), "-o", out, ".")
	if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err == nil {
		// A nested module builds with its own requirements, outside any
		// workspace that GOWORK names for the main module.
		cmd.Env = append(os.Environ(), "GOWORK=off")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", dir, err, b)
	}
	return nil
}
