// Package cli is the process plumbing masqued's commands share, so that each
// main stays wiring: a context cancelled by SIGINT or SIGTERM, flag parsing
// that reports mistakes as usage errors, and one mapping from a run function's
// error to an exit code and a one-line message.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// UsageError is a command-line mistake that has already been explained on the
// flag set's output: a short usage, then the error as the last line. Main
// exits 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ConfigError is a mistake in the configuration (a flag's value, the
// configuration file, a file the configuration names): Main prints it as
// one line and exits 2, like a usage error but without the usage.
//
// Flag and Where let the message point at the mistake wherever the value came
// from: with Where, it reads "FILE:LINE: flag: Err"; with only Flag,
// "-flag: Err", as a command-line mistake. Whoever knows where a flag was set
// (internal/config) fills in Where; the code that finds the mistake only
// names the flag.
type ConfigError struct {
	Flag  string // the flag the mistake is about, without the dash; "" = none in particular
	Where string // "FILE:LINE" of the value in a configuration file; "" = not from a file
	Err   error
}

func (e *ConfigError) Error() string {
	switch {
	case e.Where != "" && e.Flag != "":
		return e.Where + ": " + e.Flag + ": " + e.Err.Error()
	case e.Where != "":
		return e.Where + ": " + e.Err.Error()
	case e.Flag != "":
		return "-" + e.Flag + ": " + e.Err.Error()
	}
	return e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Configf returns a *ConfigError with the formatted message, about no flag in
// particular.
func Configf(format string, a ...any) error { return &ConfigError{Err: fmt.Errorf(format, a...)} }

// FlagErrorf returns a *ConfigError about the value of the flag named name
// (without the dash), with the formatted message; the message need not
// repeat the flag's name.
func FlagErrorf(name, format string, a ...any) error {
	return &ConfigError{Flag: name, Err: fmt.Errorf(format, a...)}
}

// Parse parses args into fs, which must use flag.ContinueOnError. A bad flag
// becomes a *UsageError, explained as Usagef does; -h prints the full usage
// (fs.Usage) and returns flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	// The flag package would print the error and then the full usage, which
	// pushes the error off the screen: let it print nowhere, and say it here.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		if fs.Usage != nil { // nil only in a FlagSet not made by flag.NewFlagSet
			fs.Usage()
		} else {
			fs.PrintDefaults()
		}
		return err
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		if near := Closest(fs, strings.TrimPrefix(name, "-")); near != "" {
			err = fmt.Errorf("%w (did you mean -%s?)", err, near)
		}
	}
	return usage(fs, err)
}

// Usagef returns a *UsageError with the formatted message, after printing to
// fs's output a short usage and then "name: message" as the last line, where
// it stays in sight.
func Usagef(fs *flag.FlagSet, format string, a ...any) error {
	return usage(fs, fmt.Errorf(format, a...))
}

func usage(fs *flag.FlagSet, err error) error {
	fmt.Fprintf(fs.Output(), "%s\nrun \"%s -h\" for all flags\n%s: %s\n", synopsis(fs), fs.Name(), fs.Name(), err)
	return &UsageError{Err: err}
}

// synopsis is the first paragraph of fs's usage when it starts with
// "usage:" (the commands' own Usage functions begin with their synopsis
// lines), and "usage: NAME [flags]" otherwise.
func synopsis(fs *flag.FlagSet) string {
	if fs.Usage != nil {
		var b strings.Builder
		out := fs.Output()
		fs.SetOutput(&b)
		fs.Usage()
		fs.SetOutput(out)
		if first, _, _ := strings.Cut(b.String(), "\n\n"); strings.HasPrefix(first, "usage: ") {
			return strings.TrimRight(first, "\n")
		}
	}
	return "usage: " + fs.Name() + " [flags]"
}

// Closest returns the name of fs's flag nearest to name, for a "did you
// mean" hint, or "" when none is near enough to be a likely typo: at most
// two edits (an insertion, a deletion, a substitution or two neighbours
// swapped) and fewer than half of name's letters. Flags named in skip are
// never suggested.
func Closest(fs *flag.FlagSet, name string, skip ...string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(skip, f.Name) {
			return
		}
		if d := editDistance(name, f.Name); d < bestD && 2*d < len(name) {
			best, bestD = f.Name, d
		}
	})
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// Levenshtein's, with a swap of two neighbouring bytes as one edit.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; rows two back are
	// needed for swaps.
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Main calls run with the process's arguments and standard streams, under a
// context that the first SIGINT or SIGTERM cancels (a second one kills the
// process), and exits: 0 on success or -h, 2 on a *UsageError (already
// explained), 2 after printing "name: error" to stderr on a *ConfigError,
// and 1 after printing it otherwise.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage *UsageError
	var config *ConfigError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, &usage):
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	if errors.As(err, &config) {
		os.Exit(2)
	}
	os.Exit(1)
}

// Logger returns a slog.Logger on w for a -log-level value (debug, info, warn,
// error) and a format, text or json. A bad level is a ConfigError about
// log-level.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, FlagErrorf("log-level", "want debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
