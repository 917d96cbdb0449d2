package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFile serves with settings from a file, with a flag overriding
// one of them.
func TestConfigFile(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "masqued.yaml")
	conf := "listen: \"127.0.0.1:1\"\nadmin-listen: \"127.0.0.1:0\"\nallow-private-targets: true\nmax-tunnels: 5\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, "-config", file, "-listen", "127.0.0.1:0")
	if strings.HasSuffix(d.addr, ":1") {
		t.Errorf("listening on %s: the flag did not win over the file", d.addr)
	}
	d.line(t, "admin on ") // from the file
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfig runs masqued -check-config as a process on each example
// and on broken files: a good file prints "FILE: ok" and exits 0; a bad one
// prints one line naming the field and exits 2.
func TestCheckConfig(t *testing.T) {
	bin := buildMasqued(t)
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t)
	sum := sha256.Sum256([]byte("secret"))
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("alice "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+dir)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}

	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, ex := range examples {
		t.Run(filepath.Base(ex), func(t *testing.T) {
			// The files an example names exist only on a server.
			args := []string{"-check-config", ex, "-tls-cert", certFile, "-tls-key", keyFile}
			if b, _ := os.ReadFile(ex); strings.Contains(string(b), "auth-credentials:") {
				args = append(args, "-auth-credentials", creds)
			}
			out, errOut, code := check(t, args...)
			if code != 0 || out != ex+": ok\n" {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}

	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"-check-config", write("a.yaml", "listen: \"127.0.0.1:0\"\nmax-tunels: 3\n")}, `a.yaml:2: unknown key "max-tunels"`},
		{"wrong type", []string{"-check-config", write("b.yaml", "max-tunnels: lots\n")}, `b.yaml:1: max-tunnels: want an integer, not "lots"`},
		{"bad duration", []string{"-check-config", write("c.yaml", "drain-timeout: 30 seconds\n")}, `c.yaml:1: drain-timeout: invalid value "30 seconds"`},
		{"missing file", []string{"-check-config", filepath.Join(dir, "none.yaml")}, "reading the config file"},
		{"missing with -config", []string{"-config", filepath.Join(dir, "none.yaml")}, "reading the config file"},
		{"unreadable key", []string{"-check-config", write("d.yaml", "tls-cert: "+certFile+"\ntls-key: "+certFile+"\n")}, "-tls-key"},
		{"bad value", []string{"-check-config", write("e.yaml", "access-log: everything\n")}, "-access-log"},
		{"bad auth", []string{"-check-config", write("f.yaml", "auth: bearer\nauth-credentials: "+filepath.Join(dir, "nothing")+"\n")}, "-auth-credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := check(t, tc.args...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "masqued: ") || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want one line with %q", errOut, tc.want)
			}
		})
	}
}
