package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if err := Apply(fs, "m.yaml", []byte(file), "config"); err != nil {
		t.Fatal(err)
	}
	want := values{listen: "[::1]:443", max: 7, drain: 30 * time.Second, priv: true} // the flag wins
	if v != want {
		t.Errorf("got %+v, want %+v", v, want)
	}
}

func TestEmpty(t *testing.T) {
	for _, file := range []string{"", "\n", "# nothing\n", "~\n"} {
		var v values
		if err := Apply(flags(&v), "m.yaml", []byte(file)); err != nil {
			t.Errorf("%q: %v", file, err)
		}
	}
}

// TestErrors: every mistake is one line naming the file, the line and the key.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"listen: x\nmax-tunels: 3\n", `m.yaml:2: unknown key "max-tunels"`},
		{"config: other.yaml\n", `m.yaml:1: unknown key "config"`},
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
		err := Apply(flags(&v), "m.yaml", []byte(tc.file), "config")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line starting %q", tc.file, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	var v values
	err := Load(flags(&v), filepath.Join(t.TempDir(), "none.yaml"))
	if err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte("max-tunnels: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(flags(&v), path); err != nil || v.max != 3 {
		t.Errorf("Load: %v, max-tunnels %d", err, v.max)
	}
}

func FuzzApply(f *testing.F) {
	f.Add("listen: a\nmax-tunnels: 3\ndrain-timeout: 1s\nallow-private-targets: true\n")
	f.Add("- [a, {b: c}]\n")
	f.Add("&a x: *a\n")
	f.Fuzz(func(t *testing.T, file string) {
		var v values
		if err := Apply(flags(&v), "m.yaml", []byte(file)); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	})
}
