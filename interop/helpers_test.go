package interop

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDir holds the peer programs built for this test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "masqued-interop-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

var masquego struct {
	once sync.Once
	path string
	err  error
	out  []byte // the build's output
}

// masquegoBinary builds the masque-go peer (interop/peers/masquego, a module
// of its own) once per test run and returns its path. It skips the test only
// when the build fails because the Go module proxy cannot be reached.
func masquegoBinary(t *testing.T) string {
	t.Helper()
	masquego.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		root, err := repoRoot()
		if err != nil {
			masquego.err = err
			return
		}
		masquego.path = filepath.Join(binDir, "masquego")
		cmd := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join(root, "interop", "peers", "masquego"), "-o", masquego.path, ".")
		masquego.out, masquego.err = cmd.CombinedOutput()
	})
	if masquego.err != nil {
		out := string(masquego.out)
		if strings.Contains(out, "dial tcp") || strings.Contains(out, `Get "https://`) {
			t.Skipf("cannot build the masque-go peer, the Go module proxy is unreachable: %v\n%s", masquego.err, out)
		}
		t.Fatalf("building the masque-go peer: %v\n%s", masquego.err, out)
	}
	return masquego.path
}

// repoRoot returns the directory of masqued's go.mod, the first one above
// the test's working directory.
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
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// process is a program running for one test. It gets SIGTERM at cleanup
// (SIGKILL if it has not exited 10 seconds later), and its output goes to
// the test log if the test failed.
type process struct {
	name           string
	stdout, stderr *output
	done           chan struct{} // closed when the process has exited
	err            error         // Wait's error, set before done is closed
}

// startProcess starts path with args. The process is stopped at cleanup or
// after timeout, whichever comes first.
func startProcess(t *testing.T, timeout time.Duration, path string, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	dieWithParent(cmd)
	cmd.WaitDelay = 10 * time.Second
	p := &process{
		name:   filepath.Base(path) + " " + args[0],
		stdout: &output{lines: make(chan string, 8)},
		stderr: &output{},
		done:   make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		// After SIGTERM, a clean exit shows as the context's error.
		if p.err != nil && !errors.Is(p.err, context.Canceled) {
			t.Errorf("%s: %v", p.name, p.err)
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", p.name, p.stdout, p.name, p.stderr)
		}
	})
	return p
}

// line waits for the process's next stdout line, which must start with
// prefix, and returns the rest of it.
func (p *process) line(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case l := <-p.stdout.lines:
		rest, ok := strings.CutPrefix(l, prefix)
		if !ok {
			t.Fatalf("%s printed %q, want a line starting with %q", p.name, l, prefix)
		}
		return rest
	case <-p.done:
		t.Fatalf("%s exited before printing %q: %v", p.name, prefix, p.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed no %q line in 30s", p.name, prefix)
	}
	return ""
}

// wait waits for the process to exit and stops the test unless it exited
// 0; the cleanup reports how it exited and what it printed.
func (p *process) wait(t *testing.T) {
	t.Helper()
	<-p.done
	if p.err != nil {
		t.FailNow()
	}
}

// output collects a process's output. Its first lines also go to lines, if
// set, for whoever waits for them; later ones are only collected.
type output struct {
	lines chan string

	mu      sync.Mutex // guards the fields below
	all     bytes.Buffer
	partial []byte // the current line, up to its newline
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	if o.lines == nil {
		return len(p), nil
	}
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(p), nil
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
