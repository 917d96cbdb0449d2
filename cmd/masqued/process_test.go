package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h2"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/proc"
)

// The tests in this file run masqued as a real process, built from this
// package, and signal it as a service manager would.

// buildMasqued builds masqued into a temporary directory.
func buildMasqued(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs masqued as a process")
	}
	bin := filepath.Join(t.TempDir(), "masqued")
	if err := proc.GoBuild(t.Context(), "cmd/masqued", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// process is a masqued process. Its stdout and stderr are files that a
// process it restarts into inherits too: stdout lines come through lines,
// stderr is kept in logPath.
type process struct {
	cmd     *exec.Cmd
	lines   chan string
	logPath string
	exited  chan struct{}
	err     error // cmd.Wait's, set before exited is closed
}

// startProcess starts bin with args and a state directory of its own.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	dir := t.TempDir()
	p := &process{lines: make(chan string, 64), logPath: filepath.Join(dir, "masqued.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, logFile
	p.cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+dir)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = p.cmd.Start()
	w.Close()
	logFile.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		r.Close() // a restarted process may still hold the pipe's other end
		<-read
	})
	return p
}

// line waits for the process's next stdout line, which must start with
// prefix, and returns the rest.
func (p *process) line(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case l := <-p.lines:
		v, ok := strings.CutPrefix(l, prefix)
		if !ok {
			t.Fatalf("line %q, want prefix %q", l, prefix)
		}
		return v
	case <-p.exited:
		t.Fatalf("masqued exited before printing %q: %v\n%s", prefix, p.err, p.log(t))
	case <-time.After(30 * time.Second):
		t.Fatalf("masqued printed no %q line\n%s", prefix, p.log(t))
	}
	return ""
}

func (p *process) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wait waits up to d for the process to exit and returns how it did.
func (p *process) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("masqued did not exit within %v\n%s", d, p.log(t))
		return nil
	}
}

var loopbackAddr = regexp.MustCompile(`(?:127\.0\.0\.1|\[::1\]):\d+`)

// checkLogPrivacy fails if a log line holds a target together with any
// other address but the proxy's own: a client's. It returns how many lines
// hold a target or a client address, for the caller to check that the
// check could fail.
func checkLogPrivacy(t *testing.T, log, proxy string, targets ...string) (withTarget, withClient int) {
	t.Helper()
	isTarget := map[string]bool{}
	for _, a := range targets {
		isTarget[a] = true
	}
	for line := range strings.Lines(log) {
		var target, client bool
		for _, a := range loopbackAddr.FindAllString(line, -1) {
			switch {
			case a == proxy:
			case isTarget[a]:
				target = true
			default:
				client = true
			}
		}
		if target && client {
			t.Errorf("a log line holds a client address and a target: %s", line)
		}
		if target {
			withTarget++
		}
		if client {
			withClient++
		}
	}
	return withTarget, withClient
}

// transfer sends size bytes through c in paced chunks over about d, reads
// them back from the echo server behind it, and closes c. It calls echoed
// once the first chunk is back. It fails unless every byte comes back in
// order.
func transfer(c net.Conn, size int, d time.Duration, echoed func()) error {
	defer c.Close()
	const chunk = 2048
	sent := make([]byte, size)
	for i := range sent {
		sent[i] = byte(i * 7)
	}
	pause := d / time.Duration((size+chunk-1)/chunk)
	c.SetDeadline(time.Now().Add(d + 30*time.Second))
	werr := make(chan error, 1)
	go func() {
		for off := 0; off < size; off += chunk {
			if _, err := c.Write(sent[off:min(off+chunk, size)]); err != nil {
				werr <- fmt.Errorf("writing at %d: %w", off, err)
				return
			}
			time.Sleep(pause)
		}
		werr <- nil
	}()
	got := make([]byte, size)
	first := min(chunk, size)
	n, err := io.ReadFull(c, got[:first])
	if err == nil {
		echoed()
		var rest int
		rest, err = io.ReadFull(c, got[first:])
		n += rest
	}
	if err != nil {
		c.Close()
		return errors.Join(fmt.Errorf("read %d of %d bytes: %w", n, size, err), <-werr)
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, sent) {
		return errors.New("the echo differs")
	}
	return nil
}

// tunnels runs a function for each of many tunnels at once, collects their
// errors, and tells when they all carry data: a test orders its signals
// after that event, not after a sleep.
type tunnels struct {
	wg       sync.WaitGroup
	underway sync.WaitGroup // one for each tunnel that has not yet carried data or ended
	mu       sync.Mutex     // guards errs
	errs     []error
}

// Go runs f, which calls carried once its tunnel has carried data.
func (ts *tunnels) Go(name string, f func(carried func()) error) {
	ts.underway.Add(1)
	carried := sync.OnceFunc(ts.underway.Done)
	ts.wg.Go(func() {
		// A tunnel that ends before it carried anything must not hold
		// Underway up; Wait reports its error.
		defer carried()
		if err := f(carried); err != nil {
			ts.mu.Lock()
			ts.errs = append(ts.errs, fmt.Errorf("%s: %w", name, err))
			ts.mu.Unlock()
		}
	})
}

// Underway returns once every tunnel has carried data (or ended).
func (ts *tunnels) Underway() { ts.underway.Wait() }

func (ts *tunnels) Wait() error {
	ts.wg.Wait()
	return errors.Join(ts.errs...)
}

// tcpTransfers opens n TCP tunnels to the echo server at target,
// alternately over c3 (HTTP/3) and c2 (HTTP/2), and has each transfer size bytes over about
// pace; a tunnel has carried data once its first chunk is echoed.
func (ts *tunnels) tcpTransfers(t *testing.T, ctx context.Context, n int, c3 *h3.Client, c2 *h2.Client, target string, size int, pace time.Duration) {
	t.Helper()
	for i := range n {
		dial := c3.DialTCP
		if i%2 == 1 {
			dial = c2.DialTCP
		}
		c, err := dial(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		ts.Go(fmt.Sprintf("TCP tunnel %d", i), func(carried func()) error { return transfer(c, size, pace, carried) })
	}
}

// eventually polls cond every 20ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

// dialFronts connects to masqued at addr over HTTP/3 and over HTTP/2, for
// tunnels on both fronts; the connections close with the test.
func dialFronts(t *testing.T, ctx context.Context, addr string, tlsConf *tls.Config) (*h3.Client, *h2.Client) {
	t.Helper()
	c3, err := h3.Dial(ctx, "https://"+addr, h3.Config{TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c3.Close() })
	c2, err := h2.Dial(ctx, "https://"+addr, h2.Config{TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	return c3, c2
}

// pidFrom reads a PID file, 0 if there is none yet.
func pidFrom(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
