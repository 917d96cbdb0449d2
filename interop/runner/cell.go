package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// cellRun is one cell while it runs.
type cellRun struct {
	env  *env
	cell *Cell
	id   string // names the cell at the origins
	dir  string // its files
	log  io.Writer

	stops []*proc.Process // started by start, stopped by stopAll
	quits []func()        // ask programs to exit by themselves, before stops
	// cleanups run after stops (a CONNECT-IP cell's namespaces)
	cleanups []func()
}

// lookup finds a cell's case, client and server.
func lookup(cell *Cell) (*testCase, *client, *server) {
	var tc *testCase
	var cl *client
	var sv *server
	for _, x := range cases {
		if x.name == cell.Case {
			tc = x
		}
	}
	for _, x := range clients {
		if x.name == cell.Client {
			cl = x
		}
	}
	for _, x := range servers {
		if x.name == cell.Server {
			sv = x
		}
	}
	return tc, cl, sv
}

// unsupported says why the cell cannot be played, or "".
func unsupported(tc *testCase, cl *client, sv *server) string {
	if tc.clients[cl.name] == nil {
		return cl.name + " has no way to play " + tc.name
	}
	if missing := (tc.needs | tc.clientNeeds[cl.name] | cl.needs) &^ sv.has; missing != 0 {
		return sv.name + " lacks " + missing.String()
	}
	return ipUnsupported(tc)
}

// programs are what a cell runs.
func programs(cell Cell) []string {
	tc, cl, sv := lookup(&cell)
	p := []string{cl.program}
	if tc.relay {
		p = append(p, "masqued")
	}
	if sv.name == "masque-go" {
		return append(p, "masquego")
	}
	return append(p, "masqued")
}

// run plays the cell: starts the server, runs the client, stops both.
func (c *cellRun) run(ctx context.Context, tc *testCase, cl *client, sv *server) (err error) {
	timeout := tc.timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if serr := c.stopAll(); err == nil {
			err = serr
		}
	}()
	opts, ok := tc.clientOpts[cl.name]
	if !ok {
		opts = tc.opts
	}
	p, err := sv.start(ctx, c, opts)
	if err != nil {
		return fmt.Errorf("starting %s: %w", sv.name, err)
	}
	return tc.clients[cl.name](ctx, c, cl, p)
}

// checkBody checks a hello body and that it came from the egress address.
func (c *cellRun) checkBody(p *proxy, got, want string) error {
	if got != want {
		return fmt.Errorf("body %q, want %q", clip(got), want)
	}
	return c.checkEgress(p, 1)
}

// checkLarge checks large-transfer's file by size and SHA-256, then removes it.
func (c *cellRun) checkLarge(p *proxy, file string) error {
	defer os.Remove(file)
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != largeSize || [sha256.Size]byte(h.Sum(nil)) != c.env.origins.largeSum {
		return fmt.Errorf("got %d bytes with SHA-256 %x, want %d with %x", n, h.Sum(nil), largeSize, c.env.origins.largeSum)
	}
	fmt.Fprintf(c.log, "-- %d bytes, SHA-256 %x as sent\n", n, h.Sum(nil))
	return c.checkEgress(p, 1)
}

// refused checks that a client failed with want in its error output and
// that nothing reached the origin.
func (c *cellRun) refused(err error, stderr, want string) error {
	if err == nil {
		return fmt.Errorf("the client succeeded, want %q", want)
	}
	if !strings.Contains(stderr, want) {
		return fmt.Errorf("the client failed without %q: %w", want, err)
	}
	return c.checkNone()
}

// start starts a long-running program for the cell; the cell stops it and
// logs its output when it ends.
func (c *cellRun) start(ctx context.Context, path string, args ...string) (*proc.Process, error) {
	fmt.Fprintf(c.log, "$ %s %s &\n", filepath.Base(path), redact(args))
	p, err := proc.Start(ctx, path, args...)
	if err != nil {
		return nil, err
	}
	c.stops = append(c.stops, p)
	return p, nil
}

// exec runs a program to its end, logs what it printed and returns its
// stdout and stderr. Its error, for a non-zero exit, ends with the last
// lines of stderr.
func (c *cellRun) exec(ctx context.Context, path string, args ...string) (string, string, error) {
	fmt.Fprintf(c.log, "$ %s %s\n", filepath.Base(path), redact(args))
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	fmt.Fprintf(c.log, "-- stdout (%d bytes):\n%s\n-- stderr:\n%s\n-- %v\n", stdout.Len(), clip(stdout.String()), redactLines(stderr.String()), errOr(err, "exit 0"))
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", filepath.Base(path), err, tail(redactLines(stderr.String()), 3))
	}
	return stdout.String(), stderr.String(), err
}

// stopAll stops the cell's programs and logs their output. Its error
// reports a server that did not exit cleanly.
func (c *cellRun) stopAll() error {
	for _, quit := range c.quits {
		quit()
	}
	var errs []error
	for i := len(c.stops) - 1; i >= 0; i-- {
		p := c.stops[i]
		err := p.Stop()
		fmt.Fprintf(c.log, "-- %s stopped: %v; %s\n", p.Name(), errOr(err, "exit 0"), p.Output())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s did not exit cleanly", p.Name()))
		}
	}
	for _, f := range c.cleanups {
		f()
	}
	return errors.Join(errs...)
}

// redact joins a command line for the log, leaving out the tokens of
// Proxy-Authorization headers: logs never hold tokens.
func redact(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if name, _, ok := strings.Cut(a, ":"); ok && strings.EqualFold(name, "Proxy-Authorization") {
			a = name + ": [redacted]"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// redactLines leaves the tokens out of Proxy-Authorization header lines
// (curl -v shows the request headers).
func redactLines(s string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if i := strings.Index(strings.ToLower(l), "proxy-authorization:"); i >= 0 {
			l = l[:i] + "Proxy-Authorization: [redacted]\n"
		}
		b.WriteString(l)
	}
	return b.String()
}

func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// clip shortens long output for the log.
func clip(s string) string {
	if len(s) > 4096 {
		return s[:4096] + fmt.Sprintf("… (%d bytes more)", len(s)-4096)
	}
	return s
}

// tail is the last n non-empty lines of s, joined by " | ".
func tail(s string, n int) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// url is an origin URL for this cell.
func (c *cellRun) url(scheme string, addr netip.AddrPort, what string) string {
	return scheme + "://" + addr.String() + "/" + c.id + "/" + what
}

// checkEgress checks that the origins saw want requests or packets of the
// cell, all from the proxy's egress address.
func (c *cellRun) checkEgress(p *proxy, want int) error {
	saw := c.env.origins.saw(c.id)
	if len(saw) < want {
		return fmt.Errorf("the origins saw %d requests or packets of the cell, want %d", len(saw), want)
	}
	for _, a := range saw {
		if p.egress.IsValid() && a.Addr() != p.egress {
			return fmt.Errorf("the origin saw traffic from %s, not from the proxy's egress address %s", a.Addr(), p.egress)
		}
	}
	return nil
}

// checkSources checks that the origins saw the cell's traffic come from
// at least want source ports (on the egress address): one per tunnel.
func (c *cellRun) checkSources(p *proxy, want int) error {
	if err := c.checkEgress(p, want); err != nil {
		return err
	}
	ports := map[netip.AddrPort]bool{}
	for _, a := range c.env.origins.saw(c.id) {
		ports[a] = true
	}
	if len(ports) < want {
		return fmt.Errorf("the origin saw traffic from %d source ports, want one per tunnel: %d", len(ports), want)
	}
	return nil
}

// checkNone checks that nothing of the cell reached the origins.
func (c *cellRun) checkNone() error {
	if saw := c.env.origins.saw(c.id); len(saw) > 0 {
		return fmt.Errorf("the origins saw %d requests or packets of the cell from %s, want none", len(saw), saw[0])
	}
	return nil
}
