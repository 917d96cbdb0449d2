package main

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

// process is a program the bench runs. Its output is kept for error
// messages; its first stdout lines are handed to line.
type process struct {
	name  string
	lines chan string
	out   output
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's error, set before done is closed
}

// startProcess starts path with args; env.close stops it with SIGTERM and
// expects it to exit 0.
func (e *env) startProcess(path string, args ...string) (*process, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	dieWithParent(cmd)
	cmd.WaitDelay = 15 * time.Second
	p := &process{name: filepath.Base(path), lines: make(chan string, 8), done: make(chan struct{})}
	cmd.Stdout = &lineWriter{p: p}
	cmd.Stderr = &p.out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
	}()
	e.stops = append(e.stops, func() error {
		cancel()
		<-p.done
		// After SIGTERM, a clean exit shows as the context's error.
		if p.err != nil && !errors.Is(p.err, context.Canceled) {
			return fmt.Errorf("%s: %w; its output:\n%s", p.name, p.err, p.out.String())
		}
		return nil
	})
	return p, nil
}

// line waits for the process's next stdout line, which must start with
// prefix, and returns the rest of it.
func (p *process) line(prefix string) (string, error) {
	select {
	case l := <-p.lines:
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return rest, nil
		}
		return "", fmt.Errorf("%s printed %q, want a line starting with %q", p.name, l, prefix)
	case <-p.done:
		return "", fmt.Errorf("%s exited before printing %q: %w; its output:\n%s", p.name, prefix, p.err, p.out.String())
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("%s printed no %q line in 30s; its output:\n%s", p.name, prefix, p.out.String())
	}
}

// output is a process's output, written by exec's copying goroutines.
type output struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// lineWriter is a process's stdout: kept in its output, and each line sent
// to its lines while there is room.
type lineWriter struct {
	p       *process
	partial []byte // only exec's copying goroutine touches it
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.p.out.Write(b)
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		select {
		case w.p.lines <- string(w.partial[:i]):
		default:
		}
		w.partial = w.partial[i+1:]
	}
}

// goBuild builds the main package in dir, relative to masqued's repository
// root, into binDir/name. dir may be a module of its own.
func goBuild(ctx context.Context, dir, binDir, name string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(binDir, name)
	out, err := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join(root, dir), "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", dir, err, out)
	}
	return bin, nil
}

// repoRoot returns the directory of the first go.mod at or above the
// working directory: `go run ./cmd/masque-bench` runs in the repository.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run masque-bench inside masqued's repository: no go.mod above the working directory")
		}
		dir = parent
	}
}
