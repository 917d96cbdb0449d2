package cli

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		usage   bool // a *UsageError
		help    bool // flag.ErrHelp
		printed string
	}{
		{name: "ok", args: []string{"-n", "3", "rest"}},
		{name: "unknown flag", args: []string{"-x"}, usage: true, printed: "flag provided but not defined: -x"},
		{name: "bad value", args: []string{"-n", "three"}, usage: true, printed: "invalid value"},
		{name: "help", args: []string{"-h"}, help: true, printed: "-n int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
			fs.SetOutput(&out)
			fs.Int("n", 0, "a number")
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
			if !strings.Contains(out.String(), tc.printed) {
				t.Errorf("printed %q, want %q in it", out.String(), tc.printed)
			}
		})
	}
}

func TestUsagef(t *testing.T) {
	var out strings.Builder
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.SetOutput(&out)
	fs.Int("n", 0, "a number")
	err := Usagef(fs, "unknown command %q", "frob")
	var usage *UsageError
	if !errors.As(err, &usage) || err.Error() != `unknown command "frob"` {
		t.Fatalf("Usagef = %v, want the *UsageError `unknown command \"frob\"`", err)
	}
	if s := out.String(); !strings.HasPrefix(s, "cmd: unknown command \"frob\"\n") || !strings.Contains(s, "-n int") {
		t.Errorf("printed %q, want the message, then the usage", s)
	}
}
