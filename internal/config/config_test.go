package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/cli"
)

type values struct {
	listen string
	max    int
	drain  time.Duration
	priv   bool
}

func flags(v *values) *flag.FlagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&v.listen, "listen", "127.0.0.1:4433", "")
	fs.IntVar(&v.max, "max-tunnels", 0, "")
	fs.DurationVar(&v.drain, "drain-timeout", 10*time.Second, "")
	fs.BoolVar(&v.priv, "allow-private-targets", false, "")
	fs.String("config", "", "")
	return fs
}

func TestApply(t *testing.T) {
	var v values
	fs := flags(&v)
	if err := fs.Parse([]string{"-max-tunnels", "7"}); err != nil {
		t.Fatal(err)
	}
	file := "# comment\nlisten: \"[::1]:443\"\nmax-tunnels: 100\ndrain-timeout: 30s\nallow-private-targets: true\n"
	src, err := Apply(fs, "m.yaml", []byte(file), "config")
	if err != nil {
		t.Fatal(err)
	}
	want := values{listen: "[::1]:443", max: 7, drain: 30 * time.Second, priv: true} // the flag wins
	if v != want {
		t.Errorf("got %+v, want %+v", v, want)
	}
	// The file set all but max-tunnels, which came from the command line.
	wantSrc := Source{"listen": "m.yaml:2", "drain-timeout": "m.yaml:4", "allow-private-targets": "m.yaml:5"}
	if !maps.Equal(src, wantSrc) {
		t.Errorf("source %v, want %v", src, wantSrc)
	}
}

// TestLocate: an error about a flag gets the position of the flag's value
// when the file set it, and stays a command-line error when it did not.
func TestLocate(t *testing.T) {
	src := Source{"listen": "m.yaml:2"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{cli.FlagErrorf("listen", "no port"), "m.yaml:2: listen: no port"},
		{fmt.Errorf("starting: %w", cli.FlagErrorf("listen", "no port")), "starting: -listen: no port"},
		{cli.FlagErrorf("max-tunnels", "negative"), "-max-tunnels: negative"},
		{cli.Configf("no flag"), "no flag"},
		{errors.New("not a config error"), "not a config error"},
		{&cli.ConfigError{Flag: "listen", Where: "other.yaml:9", Err: errors.New("x")}, "other.yaml:9: listen: x"},
	} {
		if got := src.Locate(tc.err); got.Error() != tc.want {
			t.Errorf("Locate(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if err := Source(nil).Locate(cli.FlagErrorf("listen", "no port")); err.Error() != "-listen: no port" {
		t.Errorf("nil Source: %q", err)
	}
	if err := src.Locate(nil); err != nil {
		t.Errorf("Locate(nil) = %v", err)
	}
}

func TestEmpty(t *testing.T) {
	for _, file := range []string{"", "\n", "# nothing\n", "~\n"} {
		var v values
		if src, err := Apply(flags(&v), "m.yaml", []byte(file)); err != nil || len(src) != 0 {
			t.Errorf("%q: %v, source %v", file, err, src)
		}
	}
}

// TestErrors: every mistake is one *cli.ConfigError of one line naming the
// file, the line and the key; an unknown key names the flag it is close to.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"listen: x\nmax-tunels: 3\n", `m.yaml:2: unknown key "max-tunels" (did you mean "max-tunnels"?)`},
		{"max-tunnel: 3\n", `m.yaml:1: unknown key "max-tunnel" (did you mean "max-tunnels"?)`},
		{"allow-private-target: true\n", `m.yaml:1: unknown key "allow-private-target" (did you mean "allow-private-targets"?)`},
		{"config: other.yaml\n", `m.yaml:1: unknown key "config"`},
		{"confg: other.yaml\n", `m.yaml:1: unknown key "confg"`}, // never a hint at a skipped key
		{"frobnicate: 3\n", `m.yaml:1: unknown key "frobnicate"`},
		{"max-tunnels: ten\n", `m.yaml:1: max-tunnels: want an integer, not "ten"`},
		{"max-tunnels: 1.5\n", `m.yaml:1: max-tunnels: want an integer`},
		{"drain-timeout: 30\n", `m.yaml:1: drain-timeout: want a duration`},
		{"drain-timeout: soon\n", `m.yaml:1: drain-timeout: invalid value "soon"`},
		{"allow-private-targets: yes\n", `m.yaml:1: allow-private-targets: want true or false, not "yes"`},
		{"listen: 1234\n", `m.yaml:1: listen: want a string, not "1234"`},
		{"listen:\n  - a\n  - b\n", `m.yaml:2: listen: want a single value, not a list`},
		{"\nlisten: a\nlisten: b\n", `m.yaml:3: listen: given again (first on line 2)`},
		{"- listen\n", `m.yaml:1: want a mapping`},
		{"listen: [\n", `m.yaml: yaml: line 1`},
	} {
		var v values
		_, err := Apply(flags(&v), "m.yaml", []byte(tc.file), "config")
		var ce *cli.ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want a *cli.ConfigError of one line starting %q", tc.file, err, tc.want)
		}
		if strings.Contains(tc.want, "unknown key") && err != nil && err.Error() != tc.want {
			t.Errorf("%q: error %q, want exactly %q (a hint only where one is close)", tc.file, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	var v values
	_, err := Load(flags(&v), filepath.Join(t.TempDir(), "none.yaml"))
	var ce *cli.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "config file") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte("max-tunnels: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if src, err := Load(flags(&v), path); err != nil || v.max != 3 || src["max-tunnels"] != path+":1" {
		t.Errorf("Load: %v, max-tunnels %d, source %v", err, v.max, src)
	}
}

func FuzzApply(f *testing.F) {
	f.Add("listen: a\nmax-tunnels: 3\ndrain-timeout: 1s\nallow-private-targets: true\n")
	f.Add("- [a, {b: c}]\n")
	f.Add("&a x: *a\n")
	f.Fuzz(func(t *testing.T, file string) {
		var v values
		if _, err := Apply(flags(&v), "m.yaml", []byte(file)); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	})
}
