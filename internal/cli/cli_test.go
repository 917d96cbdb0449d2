package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// mainArgsEnv, when set, makes the test binary run Main on newFlags with
// these (space-separated) arguments instead of the tests: TestMainExit
// starts it so to see Main's exit codes and stderr.
const mainArgsEnv = "CLI_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{"cmd"}, strings.Fields(args)...)
		Main("cmd", func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := newFlags(stderr)
			if err := Parse(fs, args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return Usagef(fs, "unexpected argument %q", fs.Arg(0))
			}
			if fs.Lookup("n").Value.String() == "7" {
				return FlagErrorf("n", "seven is unlucky")
			}
			return nil
		})
	}
	goleak.VerifyTestMain(m)
}

// newFlags is a command's flag set: its Usage begins with the synopsis.
func newFlags(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: cmd [flags] [thing]\n\nDoes things.\n\n")
		fs.PrintDefaults()
	}
	fs.Int("n", 0, "a number")
	fs.String("listen", "", "an address")
	return fs
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestParse(t *testing.T) {
	const short = "usage: cmd [flags] [thing]\nrun \"cmd -h\" for all flags\n"
	for _, tc := range []struct {
		name    string
		args    []string
		usage   bool // a *UsageError
		help    bool // flag.ErrHelp
		printed string
	}{
		{name: "ok", args: []string{"-n", "3", "rest"}},
		{name: "unknown flag", args: []string{"-x"}, usage: true,
			printed: short + "cmd: flag provided but not defined: -x\n"},
		{name: "typo", args: []string{"--lisen", ":1"}, usage: true,
			printed: short + "cmd: flag provided but not defined: -lisen (did you mean -listen?)\n"},
		{name: "bad value", args: []string{"-n", "three"}, usage: true,
			printed: short + "cmd: invalid value \"three\" for flag -n: parse error\n"},
		{name: "help", args: []string{"-h"}, help: true,
			printed: "usage: cmd [flags] [thing]\n\nDoes things.\n\n  -listen string\n    \tan address\n  -n int\n    \ta number\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			fs := newFlags(&out)
			err := Parse(fs, tc.args)
			var usage *UsageError
			if got := errors.As(err, &usage); got != tc.usage {
				t.Errorf("Parse(%q) = %v: usage error %v, want %v", tc.args, err, got, tc.usage)
			}
			if got := errors.Is(err, flag.ErrHelp); got != tc.help {
				t.Errorf("Parse(%q) = %v: ErrHelp %v, want %v", tc.args, err, got, tc.help)
			}
			if !tc.usage && !tc.help && err != nil {
				t.Errorf("Parse(%q) = %v", tc.args, err)
			}
			if out.String() != tc.printed {
				t.Errorf("printed\n%s\nwant\n%s", out.String(), tc.printed)
			}
			if fs.Output() != &out {
				t.Error("Parse did not give the flag set its output back")
			}
		})
	}
}

func TestUsagef(t *testing.T) {
	var out strings.Builder
	fs := newFlags(&out)
	err := Usagef(fs, "unknown command %q", "frob")
	var usage *UsageError
	if !errors.As(err, &usage) || err.Error() != `unknown command "frob"` {
		t.Fatalf("Usagef = %v, want the *UsageError `unknown command \"frob\"`", err)
	}
	if want := "usage: cmd [flags] [thing]\nrun \"cmd -h\" for all flags\ncmd: unknown command \"frob\"\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
}

// TestUsageDefault: a flag set with the flag package's default Usage gets a
// synopsis made from its name, and the default full usage for -h.
func TestUsageDefault(t *testing.T) {
	var out strings.Builder
	fs := flag.NewFlagSet("cmd sub", flag.ContinueOnError)
	fs.SetOutput(&out)
	fs.Int("n", 0, "a number")
	Usagef(fs, "no")
	if want := "usage: cmd sub [flags]\nrun \"cmd sub -h\" for all flags\ncmd sub: no\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := Parse(fs, []string{"-help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	if want := "Usage of cmd sub:\n  -n int\n    \ta number\n"; out.String() != want {
		t.Errorf("-help printed %q, want %q", out.String(), want)
	}
}

// TestMainExit runs Main in a child process: usage and configuration
// mistakes exit 2 with the error as the last line of stderr, -h exits 0.
func TestMainExit(t *testing.T) {
	for _, tc := range []struct {
		args string
		code int
		last string // stderr's last line
	}{
		{"-n 3", 0, ""},
		{"-h", 0, "    \ta number"},
		{"-lisen :1", 2, "cmd: flag provided but not defined: -lisen (did you mean -listen?)"},
		{"extra", 2, `cmd: unexpected argument "extra"`},
		{"-n 7", 2, "cmd: -n: seven is unlucky"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), mainArgsEnv+"="+tc.args)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			if got := lastLine(stderr.String()); got != tc.last {
				t.Errorf("last line of stderr %q, want %q", got, tc.last)
			}
		})
	}
}

func TestConfigError(t *testing.T) {
	cause := errors.New("no such file")
	for _, tc := range []struct {
		err  *ConfigError
		want string
	}{
		{&ConfigError{Err: cause}, "no such file"},
		{&ConfigError{Flag: "tls-cert", Err: cause}, "-tls-cert: no such file"},
		{&ConfigError{Where: "m.yaml:3", Err: cause}, "m.yaml:3: no such file"},
		{&ConfigError{Flag: "tls-cert", Where: "m.yaml:3", Err: cause}, "m.yaml:3: tls-cert: no such file"},
	} {
		if got := tc.err.Error(); got != tc.want || !errors.Is(tc.err, cause) {
			t.Errorf("%+v: %q, want %q wrapping the cause", *tc.err, got, tc.want)
		}
	}
	var ce *ConfigError
	if err := FlagErrorf("log-level", "bad %q", "x"); !errors.As(err, &ce) || err.Error() != `-log-level: bad "x"` {
		t.Errorf("FlagErrorf: %v", err)
	}
	if _, err := Logger(io.Discard, "verbose", "text"); !errors.As(err, &ce) || ce.Flag != "log-level" {
		t.Errorf("Logger with a bad level: %v, want a ConfigError about log-level", err)
	}
}

func TestClosest(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	for _, n := range []string{"listen", "max-tunnels", "max-tunnels-per-conn", "auth", "config", "tls-cert", "tls-key"} {
		fs.Bool(n, false, "")
	}
	for _, tc := range []struct{ name, want string }{
		{"max-tunnel", "max-tunnels"},
		{"max-tunels", "max-tunnels"},
		{"lsiten", "listen"}, // a swap is one edit
		{"auht", "auth"},     // even in a short name
		{"tls-crt", "tls-cert"},
		{"tls-ky", "tls-key"},
		{"max-tunnels-per-con", "max-tunnels-per-conn"},
		{"ath", "auth"},
		{"au", ""}, // two edits of two letters: too far
		{"frobnicate", ""},
		{"conf", ""},   // two edits of four letters
		{"config", ""}, // skipped
	} {
		if got := Closest(fs, tc.name, "config"); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
