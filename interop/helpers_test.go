package interop

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/proc"
	"github.com/masqued/masqued/internal/xconnect"
)

// binDir holds the peer programs built for this test run.
var binDir string

func TestMain(m *testing.M) {
	if err := xconnect.Enable(); err != nil { // the HTTP/2 front's CONNECT-UDP
		panic(err)
	}
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
	err  error // the build's, with its output
}

// masquegoBinary builds the masque-go peer (interop/peers/masquego, a module
// of its own) once per test run and returns its path. It skips the test only
// when the build fails because the Go module proxy cannot be reached.
func masquegoBinary(t *testing.T) string {
	t.Helper()
	masquego.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		masquego.path = filepath.Join(binDir, "masquego")
		masquego.err = proc.GoBuild(ctx, filepath.Join("interop", "peers", "masquego"), masquego.path)
	})
	if err := masquego.err; err != nil {
		if msg := err.Error(); strings.Contains(msg, "dial tcp") || strings.Contains(msg, `Get "https://`) {
			t.Skipf("cannot build the masque-go peer, the Go module proxy is unreachable: %v", err)
		}
		t.Fatalf("building the masque-go peer: %v", err)
	}
	return masquego.path
}

// startProcess starts path with args for this test. It gets SIGTERM at
// cleanup or after timeout, whichever comes first; the cleanup fails the
// test unless it exited 0, and logs its output if the test failed.
func startProcess(t *testing.T, timeout time.Duration, path string, args ...string) *proc.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	p, err := proc.Start(ctx, path, args...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer cancel()
		if err := p.Stop(); err != nil {
			t.Error(err)
		} else if t.Failed() {
			t.Logf("%s: %s", p.Name(), p.Output())
		}
	})
	return p
}

// line waits for p's next stdout line, which must start with prefix, and
// returns the rest of it.
func line(t *testing.T, p *proc.Process, prefix string) string {
	t.Helper()
	rest, err := p.Line(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return rest
}

// wait waits for p to exit and stops the test unless it exited 0; the
// cleanup reports how it exited and what it printed.
func wait(t *testing.T, p *proc.Process) {
	t.Helper()
	if p.Wait() != nil {
		t.FailNow()
	}
}
