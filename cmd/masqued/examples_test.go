package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/masqued/masqued/geoegress/geotest"
)

// examples are the files in examples/, each with the flags whose values name
// files that exist only on a server: the test points them at files it makes.
var examples = []struct {
	file  string
	paths []string
}{
	{"bearer.yaml", []string{"tls-cert", "tls-key", "auth-credentials"}},
	{"masqued.yaml", []string{"tls-cert", "tls-key", "pid-file"}},
	{"privacypass.yaml", []string{"tls-cert", "tls-key", "egress-pools", "egress-key", "geoip-db"}},
}

// commentedSetting is a comment line that starts like a setting, "# key:
// value": an example's optional setting, which the test checks too.
var commentedSetting = regexp.MustCompile(`^#\s?([a-z][a-z0-9-]*:(\s.*)?)$`)

// pathValue is a setting whose value is an absolute path.
var pathValue = regexp.MustCompile(`^([a-z][a-z0-9-]*):\s*"?(/[^"\s]*)`)

// TestExamples runs -check-config on every example, with its optional
// settings uncommented and its server-side files replaced by test files on
// the same lines, so that an example with a key, a value or a file format
// masqued no longer accepts fails here. Keys that name servers (pp-issuer,
// pp-redis, resolver) keep their values: -check-config checks their form and
// contacts none of them, so the example's Redis on 127.0.0.1:6379 need not
// run.
func TestExamples(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "..", "examples", ex.file))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			files := exampleFiles(t, dir)
			lines := strings.Split(string(b), "\n")
			var replaced []string
			for i, line := range lines {
				if m := commentedSetting.FindStringSubmatch(line); m != nil {
					line = m[1]
				}
				if m := pathValue.FindStringSubmatchIndex(line); m != nil {
					key := line[m[2]:m[3]]
					if !slices.Contains(ex.paths, key) {
						t.Fatalf("line %d: %s names a path, but the test does not replace %q for this example", i+1, key, key)
					}
					line = line[:m[4]] + files[key] + line[m[5]:]
					replaced = append(replaced, key)
				}
				lines[i] = line
			}
			for _, key := range ex.paths {
				if !slices.Contains(replaced, key) {
					t.Errorf("the test replaces %s, which the example does not set", key)
				}
			}
			file := filepath.Join(dir, ex.file)
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			if err := run(t.Context(), []string{"-check-config", file}, &stdout, &stderr); err != nil {
				t.Fatalf("-check-config: %v\nthe file checked:\n%s", err, strings.Join(lines, "\n"))
			}
			if want := file + ": ok\n"; stdout.String() != want {
				t.Errorf("stdout %q, want %q", stdout.String(), want)
			}
		})
	}
}

// TestExamplesListed fails when a file in examples/ is missing from
// TestExamples' table, or the table names a file that is gone.
func TestExamplesListed(t *testing.T) {
	found, err := filepath.Glob(filepath.Join("..", "..", "examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, ex := range examples {
		listed = append(listed, ex.file)
	}
	for i, f := range found {
		found[i] = filepath.Base(f)
		if !slices.Contains(listed, found[i]) {
			t.Errorf("examples/%s is not in TestExamples' table", found[i])
		}
	}
	for _, f := range listed {
		if !slices.Contains(found, f) {
			t.Errorf("TestExamples' table names examples/%s, which does not exist", f)
		}
	}
}

// exampleFiles writes, in dir, a file that passes for each flag that names
// one, and returns their paths by flag name.
func exampleFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	certFile, keyFile := writeKeyPair(t)
	files := map[string]string{
		"tls-cert":         certFile,
		"tls-key":          keyFile,
		"pid-file":         filepath.Join(dir, "masqued.pid"), // -check-config writes none
		"auth-credentials": filepath.Join(dir, "credentials"),
		"egress-pools":     filepath.Join(dir, "pools.csv"),
		"egress-key":       filepath.Join(dir, "egress.key"),
		"geoip-db":         filepath.Join(dir, "geo.mmdb"),
	}
	for name, content := range map[string]string{
		"auth-credentials": "alice 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n", // sha256("secret")
		"egress-pools":     "192.0.2.1,GB,GB-ENG,London,,gcpv\n",
		"egress-key":       "0123456789abcdef0123456789abcdef\n",
	} {
		if err := os.WriteFile(files[name], []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := geotest.Write(files["geoip-db"], map[netip.Addr]geotest.Place{
		netip.MustParseAddr("192.0.2.9"): {Country: "GB", Subdivision: "ENG", Lat: 51.5, Lon: -0.1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestREADMEConfigError checks README's sample of a config error against
// what -check-config prints for the example it names, on a machine without
// the example's certificate.
func TestREADMEConfigError(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var sample string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "masqued: examples/") {
			sample = strings.TrimSuffix(line, "\n")
		}
	}
	if sample == "" {
		t.Fatal(`README has no "masqued: examples/…" sample line`)
	}
	if _, err := os.Stat("/etc/masqued/fullchain.pem"); err == nil {
		t.Skip("this machine has the example's certificate")
	}
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Chdir(filepath.Join("..", "..")) // README's paths are from the repository's root
	var stdout, stderr strings.Builder
	err = run(t.Context(), []string{"-check-config", "examples/masqued.yaml"}, &stdout, &stderr)
	if err == nil || exitCode(err) != 2 || "masqued: "+err.Error() != sample {
		t.Errorf("-check-config examples/masqued.yaml: %v (exit %d)\nREADME shows: %s", err, exitCode(err), sample)
	}
}
