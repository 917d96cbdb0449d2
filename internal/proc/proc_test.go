package proc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// child is testdata/child, built by TestMain with GoBuild.
var child string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "proc-test-")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	child = filepath.Join(dir, "child")
	err = GoBuild(ctx, filepath.Join("internal", "proc", "testdata", "child"), child)
	cancel()
	if err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func start(t *testing.T, ctx context.Context, args ...string) *Process {
	t.Helper()
	p, err := Start(ctx, child, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

func TestLinesThenStop(t *testing.T) {
	p := start(t, context.Background(), "serve", "listening on 127.0.0.1:4433", "certificate /c.pem")
	if p.Name() != "child serve" {
		t.Errorf("Name() = %q, want %q", p.Name(), "child serve")
	}
	for _, want := range [][2]string{{"serve", ""}, {"listening on ", "127.0.0.1:4433"}, {"certificate ", "/c.pem"}} {
		got, err := p.Line(want[0])
		if err != nil || got != want[1] {
			t.Fatalf("Line(%q) = %q, %v; want %q", want[0], got, err, want[1])
		}
	}
	// A clean exit after Stop's SIGTERM is no error, nor is a second Stop.
	for range 2 {
		if err := p.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	if got := p.Stderr(); got != "to stderr\n" {
		t.Errorf("Stderr() = %q", got)
	}
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		timeout time.Duration // of Start's context; 0 = none
		exits   bool          // by itself or at timeout: Wait for it before Stop
		want    string        // Line("listening on ")'s result
		lineErr string        // in Line's error; "" = none
		exitErr string        // in Wait's and Stop's errors; "" = none
	}{
		{name: "other line", args: []string{"hello"}, lineErr: `printed "hello"`},
		{name: "exit before line", args: []string{"-then", "exit", "-code", "3"}, exits: true, lineErr: "exited before printing", exitErr: "exit status 3"},
		{name: "exit 0 after line", args: []string{"-then", "exit", "listening on A"}, exits: true, want: "A"},
		{name: "context ends", args: []string{"listening on A"}, timeout: 50 * time.Millisecond, exits: true, want: "A", exitErr: "context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			p := start(t, ctx, tc.args...)
			got, err := p.Line("listening on ")
			if !matches(err, tc.lineErr) || got != tc.want {
				t.Errorf("Line = %q, %v; want %q and an error with %q", got, err, tc.want, tc.lineErr)
			}
			if tc.exitErr != "" && err != nil && !strings.Contains(err.Error(), "to stderr") {
				t.Errorf("Line's error %q lacks the process's output", err)
			}
			if tc.exits {
				if err := p.Wait(); !matches(err, tc.exitErr) {
					t.Errorf("Wait: %v, want an error with %q", err, tc.exitErr)
				}
			}
			if err := p.Stop(); !matches(err, tc.exitErr) {
				t.Errorf("Stop: %v, want an error with %q", err, tc.exitErr)
			}
		})
	}
}

// matches reports whether err is nil and want empty, or err's message
// contains want.
func matches(err error, want string) bool {
	if err == nil || want == "" {
		return err == nil && want == ""
	}
	return strings.Contains(err.Error(), want)
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "internal", "proc"); wd != want {
		t.Errorf("RepoRoot() = %q; the test runs in %q", root, wd)
	}
}

func TestDeclares(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		want  bool
	}{
		{"module github.com/masqued/masqued\n\ngo 1.26.0\n", true},
		{"// masqued\nmodule \"github.com/masqued/masqued\"\n", true},
		{"module github.com/masqued/masqued/interop/peers/masquego\n", false},
		{"module github.com/masqued/masquedx\n", false},
		{"go 1.26.0\n", false},
	} {
		if got := declares([]byte(tc.gomod), modulePath); got != tc.want {
			t.Errorf("declares(%q) = %v, want %v", tc.gomod, got, tc.want)
		}
	}
}

func TestGoBuildError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join("internal", "proc", "testdata", "missing")
	err := GoBuild(ctx, dir, filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "building "+dir) {
		t.Fatalf("GoBuild of a missing package: %v, want a building error", err)
	}
}
