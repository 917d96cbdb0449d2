// Package runner is masqued's interop runner: it starts each server (masqued,
// masque-go's proxy), drives each client (masque-client over HTTP/3, HTTP/2
// and HTTP/1.1, masque-go's client, curl, Chromium) through each test case,
// and reports a matrix of results, as the QUIC interop runner does for QUIC
// stacks. Servers and clients are real programs run as processes; the origins
// they reach run in the runner's process on loopback, so that a case's pass
// criterion can be checked where the traffic ends: the origin saw the
// request, from the proxy's egress address, with the expected content.
//
// Which client and server support which case is a static table (see cases.go
// and Supports): unsupported cells are reported as such and never fail a run.
// cmd/masque-interop wires it to the command line.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/masqued/masqued/internal/proc"
)

// Config configures a run. Zero fields take the defaults documented on each.
type Config struct {
	OutDir   string         // results.json, results.md, logs/ and bin/; required
	Run      *regexp.Regexp // cells whose "case/client/server" matches; nil = all
	Parallel int            // cells run at once; 0 = 2
	// MasquedArgs are extra flags for every masqued the run starts, such as
	// -interop-break capsules to check that the runner notices.
	MasquedArgs []string
	// NoBrowser reports the Chromium and Firefox cells as unsupported, for
	// machines where the browsers cannot be installed; without it they fail
	// there.
	NoBrowser bool
	// Progress receives a line per finished cell; nil = none.
	Progress io.Writer
}

// Status is a cell's outcome.
type Status string

const (
	Pass        Status = "pass"
	Fail        Status = "fail"
	Unsupported Status = "unsupported" // by the client or the server: not run, or refused as unsupported
)

// Symbol is the status's mark in the matrix.
func (s Status) Symbol() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✕"
	}
	return "−"
}

// Cell is one client against one server in one case.
type Cell struct {
	Case     string  `json:"case"`
	Client   string  `json:"client"`
	Server   string  `json:"server"`
	Status   Status  `json:"status"`
	Expected Status  `json:"expected"`          // pass for supported cells, else unsupported
	Detail   string  `json:"detail,omitempty"`  // why it failed, or why it is unsupported
	Seconds  float64 `json:"seconds,omitempty"` // how long it ran
	Log      string  `json:"log,omitempty"`     // its log, relative to OutDir
}

// Name is the cell's "case/client/server", what Config.Run matches.
func (c *Cell) Name() string { return c.Case + "/" + c.Client + "/" + c.Server }

// Results are a run's cells, in case, client, server order.
type Results struct {
	Cells    []Cell            `json:"cells"`
	Versions map[string]string `json:"versions"` // of the programs that ran
	Seconds  float64           `json:"seconds"`
}

// Failed returns the cells expected to pass that did not.
func (r *Results) Failed() []Cell {
	var failed []Cell
	for _, c := range r.Cells {
		if c.Expected == Pass && c.Status != Pass {
			failed = append(failed, c)
		}
	}
	return failed
}

// Run builds the programs, starts the origins, runs every selected cell and
// writes results.json and results.md to c.OutDir. Its error is for a run
// that could not be made (a build failed), not for failed cells: see
// Results.Failed.
func Run(ctx context.Context, c Config) (*Results, error) {
	start := time.Now()
	if c.OutDir == "" {
		return nil, errors.New("runner: no output directory")
	}
	if c.Parallel <= 0 {
		c.Parallel = 2
	}
	out, err := filepath.Abs(c.OutDir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "bin", "work"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return nil, err
		}
	}
	var selected []Cell
	for _, tc := range cases {
		for _, cl := range clients {
			for _, sv := range servers {
				cell := Cell{Case: tc.name, Client: cl.name, Server: sv.name, Expected: Pass}
				if c.Run != nil && !c.Run.MatchString(cell.Name()) {
					continue
				}
				why := unsupported(tc, cl, sv)
				if why == "" && c.NoBrowser && (cl.program == "chromium" || cl.program == "firefox") {
					why = "browsers not installed here (-no-browser)"
				}
				if why != "" {
					cell.Status, cell.Expected, cell.Detail = Unsupported, Unsupported, why
				}
				selected = append(selected, cell)
			}
		}
	}
	e, err := newEnv(ctx, out, c.MasquedArgs, selected)
	if err != nil {
		return nil, err
	}
	defer e.close()

	// The slowest cells first, so that they do not end the run alone.
	order := make([]int, 0, len(selected))
	for i, cell := range selected {
		if cell.Status == "" {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(weight(selected[b]), weight(selected[a]))
	})
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards Progress
	for range c.Parallel {
		wg.Go(func() {
			for i := range work {
				cell := &selected[i]
				e.run(ctx, cell, i)
				if c.Progress != nil {
					mu.Lock()
					fmt.Fprintf(c.Progress, "%s %-50s %5.1fs %s\n", cell.Status.Symbol(), cell.Name(), cell.Seconds, firstLine(cell.Detail))
					mu.Unlock()
				}
			}
		})
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()

	r := &Results{Cells: selected, Versions: e.versions(ctx), Seconds: time.Since(start).Seconds()}
	if err := r.write(out); err != nil {
		return r, err
	}
	return r, nil
}

// weight ranks cells by how long they take, roughly.
func weight(c Cell) int {
	switch {
	case c.Case == "large-transfer", c.Case == "two-hop":
		return 3
	case c.Case == "many-tunnels", c.Client == "chromium", c.Client == "firefox":
		return 2
	}
	return 1
}

// run runs one cell, recording its outcome, time and log in cell.
func (e *env) run(ctx context.Context, cell *Cell, i int) {
	start := time.Now()
	logName := filepath.Join("logs", fmt.Sprintf("%s--%s--%s.log", cell.Case, strings.ReplaceAll(cell.Client, "/", "-"), cell.Server))
	cell.Log = logName
	f, err := os.Create(filepath.Join(e.out, logName))
	if err != nil {
		cell.Status, cell.Detail = Fail, err.Error()
		return
	}
	defer f.Close()
	tc, cl, sv := lookup(cell)
	c := &cellRun{env: e, cell: cell, id: "c" + strconv.Itoa(i), log: &lockedWriter{w: f}, dir: filepath.Join(e.out, "work", strconv.Itoa(i))}
	err = c.run(ctx, tc, cl, sv)
	cell.Seconds = time.Since(start).Round(10 * time.Millisecond).Seconds()
	var un *unsupportedError
	switch {
	case errors.As(err, &un):
		cell.Status, cell.Detail = Unsupported, un.why
		cell.Expected = Unsupported // found out by running: the client refuses
	case err != nil:
		cell.Status, cell.Detail = Fail, err.Error()
	default:
		cell.Status = Pass
	}
	fmt.Fprintf(c.log, "\n== %s: %s %s\n", cell.Name(), cell.Status, cell.Detail)
	if cell.Status != Fail {
		os.RemoveAll(c.dir) // certificates, browser profiles: kept only for failures
	}
}

// unsupportedError is a cell's finding that the client does not support
// what the case needs, such as Chromium refusing a quic:// proxy.
type unsupportedError struct{ why string }

func (e *unsupportedError) Error() string { return "unsupported: " + e.why }

// lockedWriter serialises writes to a cell's log from its processes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// env is what a run's cells share: the programs and the origins.
type env struct {
	out         string
	masquedArgs []string
	bin         map[string]string // program → path
	origins     *origins
	chromium    string // path, or "" with chromiumWhy saying why
	chromiumWhy string
	firefox     string // path, or "" with firefoxWhy saying why
	firefoxWhy  string
	firefoxXPI  string // the extension, built for the run
	firefoxErr  error  // why the extension did not build
	needCurl    bool
}

func newEnv(ctx context.Context, out string, masquedArgs []string, cells []Cell) (*env, error) {
	e := &env{out: out, masquedArgs: masquedArgs, bin: map[string]string{}}
	need := map[string]bool{}
	for _, c := range cells {
		if c.Status == "" {
			for _, p := range programs(c) {
				need[p] = true
			}
		}
	}
	builds := map[string]string{"masqued": "cmd/masqued", "masque-client": "cmd/masque-client", "masquego": "interop/peers/masquego", "connectipgo": "interop/peers/connectipgo"}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for name, dir := range builds {
		if !need[name] {
			continue
		}
		path := filepath.Join(out, "bin", name)
		e.bin[name] = path
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := proc.GoBuild(ctx, dir, path); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e.needCurl = need["curl"]
	if need["chromium"] {
		e.chromium, e.chromiumWhy = findChromium()
	}
	if need["firefox"] {
		if e.firefox, e.firefoxWhy = findFirefox(); e.firefox != "" {
			// A failed build fails the Firefox cells, not the run.
			e.firefoxXPI, e.firefoxErr = buildExtension(ctx)
		}
	}
	o, err := startOrigins(filepath.Join(out, "work"))
	if err != nil {
		return nil, err
	}
	e.origins = o
	return e, nil
}

func (e *env) close() { e.origins.close() }

// firstLine is s up to its first newline.
func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
