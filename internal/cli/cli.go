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
	"syscall"
)

// UsageError is a command-line mistake that has already been explained on the
// flag set's output, followed by the usage. Main exits 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ConfigError is a mistake in the configuration (a flag's value, the
// configuration file, a file the configuration names): Main prints it as
// one line and exits 2, like a usage error but without the usage.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Configf returns a *ConfigError with the formatted message.
func Configf(format string, a ...any) error { return &ConfigError{Err: fmt.Errorf(format, a...)} }

// Parse parses args into fs, which must use flag.ContinueOnError. A bad flag
// becomes a *UsageError (the flag package has printed it and the usage); -h
// returns flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &UsageError{Err: err}
}

// Usagef prints "name: message" and the usage to fs's output and returns the
// message as a *UsageError.
func Usagef(fs *flag.FlagSet, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), err)
	fs.Usage()
	return &UsageError{Err: err}
}

// Main calls run with the process's arguments and standard streams, under a
// context that the first SIGINT or SIGTERM cancels (a second one kills the
// process), and exits: 0 on success or -h, 2 on a *UsageError, 2 after
// printing "name: error" to stderr on a *ConfigError, and 1 after printing
// it otherwise.
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
// error) and a format, text or json. A bad level is a ConfigError naming
// -log-level.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, Configf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
