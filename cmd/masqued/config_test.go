package main

import (
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

// checkFunc runs masqued with args and returns what it printed and its exit
// code.
type checkFunc func(t *testing.T, args ...string) (stdout, stderr string, code int)

// processCheck builds masqued and returns a checkFunc that runs it as a
// process with the state directory dir, so that the exit codes and output
// are cli.Main's.
func processCheck(t *testing.T, dir string) checkFunc {
	bin := buildMasqued(t)
	return func(t *testing.T, args ...string) (stdout, stderr string, code int) {
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
}

// TestCheckConfig runs masqued -check-config as a process on broken files: a
// bad one prints one line naming the file, the line and the key, and exits
// 2, also when the mistake is found in a check of the value after the file
// is read; a flag on the command line is named as such. (TestExamples
// checks the good files in examples/.)
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	check := processCheck(t, dir)
	certFile, _ := writeKeyPair(t)
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
		{"unknown key", []string{"-check-config", write("a.yaml", "listen: \"127.0.0.1:0\"\nmax-tunels: 3\n")},
			`a.yaml:2: unknown key "max-tunels" (did you mean "max-tunnels"?)`},
		{"wrong type", []string{"-check-config", write("b.yaml", "max-tunnels: lots\n")}, `b.yaml:1: max-tunnels: want an integer, not "lots"`},
		{"bad duration", []string{"-check-config", write("c.yaml", "drain-timeout: 30 seconds\n")}, `c.yaml:1: drain-timeout: invalid value "30 seconds"`},
		{"missing file", []string{"-check-config", filepath.Join(dir, "none.yaml")}, "reading the config file"},
		{"missing with -config", []string{"-config", filepath.Join(dir, "none.yaml")}, "reading the config file"},
		{"unreadable key", []string{"-check-config", write("d.yaml", "# a key that is a certificate\ntls-cert: "+certFile+"\ntls-key: "+certFile+"\n")},
			"d.yaml:2: tls-cert: "},
		{"missing certificate", []string{"-check-config", write("d2.yaml", "tls-cert: /nonexistent/fullchain.pem\ntls-key: /nonexistent/privkey.pem\n")},
			"d2.yaml:1: tls-cert: loading the certificate and key: open /nonexistent/fullchain.pem: no such file or directory"},
		{"bad value", []string{"-check-config", write("e.yaml", "\naccess-log: everything\n")}, "e.yaml:2: access-log: "},
		{"bad auth", []string{"-check-config", write("f.yaml", "auth: bearer\nauth-credentials: "+filepath.Join(dir, "nothing")+"\n")}, "f.yaml:2: auth-credentials: "},
		{"log level", []string{"-check-config", write("g.yaml", "log-format: json\nlog-level: verbose\n")},
			`g.yaml:2: log-level: want debug, info, warn or error, not "verbose"`},
		{"negative", []string{"-check-config", write("h.yaml", "max-tunnels: 5\nidle-timeout: -1s\n")}, "h.yaml:2: idle-timeout: must not be negative"},
		{"listen port only", []string{"-check-config", write("i.yaml", "listen: \"443\"\n")},
			`i.yaml:1: listen: "443" has no host: give 127.0.0.1:443 (this machine only) or :443 (every interface)`},
		{"pair", []string{"-check-config", write("j.yaml", "max-tunnels: 5\ngeoip-db: /var/lib/GeoIP/GeoLite2-City.mmdb\n")}, "j.yaml:2: geoip-db: needs -egress-pools"},
		{"issuer URL", []string{"-check-config", write("k.yaml", "auth: privacypass\npp-issuer: issuer.example\n")},
			`k.yaml:2: pp-issuer: want the issuer directory's https:// URL, not "issuer.example"`},
		{"egress key", []string{"-check-config", write("l.yaml", "egress-pools: ../../geoegress/testdata/pools.csv\negress-key: "+filepath.Join(dir, "nokey")+"\n")},
			"l.yaml:2: egress-key: "},
		{"command line wins", []string{"-check-config", write("m.yaml", "log-level: info\n"), "-log-level", "verbose"},
			`-log-level: want debug, info, warn or error, not "verbose"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := check(t, tc.args...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			line, ok := strings.CutPrefix(errOut, "masqued: ")
			if strings.Count(errOut, "\n") != 1 || !ok || !strings.Contains(line, tc.want) {
				t.Errorf("stderr %q, want one line with %q", errOut, tc.want)
			}
			if strings.HasPrefix(tc.want, "-") && strings.Contains(line, ".yaml:") {
				t.Errorf("stderr %q names the file, but the value came from the command line", errOut)
			}
		})
	}
}

// TestUsageMistakes: a mistake on the command line exits 2 with a short
// usage and the error as the last line of stderr, where it stays in sight;
// -h prints every flag and exits 0.
func TestUsageMistakes(t *testing.T) {
	check := processCheck(t, t.TempDir())
	for _, tc := range []struct {
		name string
		args []string
		last string // stderr's last line
	}{
		{"unknown flag", []string{"-lisen", "127.0.0.1:0"}, "masqued: flag provided but not defined: -lisen (did you mean -listen?)"},
		{"bad flag value", []string{"-max-tunnels", "lots"}, `masqued: invalid value "lots" for flag -max-tunnels: parse error`},
		{"argument", []string{"serve"}, `masqued: unexpected argument "serve"`},
		{"listen port only", []string{"-listen", "4433"},
			`masqued: -listen: "4433" has no host: give 127.0.0.1:4433 (this machine only) or :4433 (every interface)`},
		{"listen host only", []string{"-listen", "::1"}, `masqued: -listen: "::1" has no port: give HOST:PORT, such as [::1]:4433`},
		{"admin listen port only", []string{"-admin-listen", "9464"},
			`masqued: -admin-listen: "9464" has no host: give 127.0.0.1:9464 (this machine only) or :9464 (every interface)`},
		{"log level", []string{"-log-level", "verbose"}, `masqued: -log-level: want debug, info, warn or error, not "verbose"`},
		{"relay-to without a port", []string{"-relay-to", "egress.example"}, `masqued: -relay-to: want HOST:PORT of an egress proxy (a name or address, and a port), not "egress.example"`},
		{"trusted relay not an address", []string{"-trust-geohash-from-relays", "relay.example", "-egress-pools", "x"},
			`masqued: -trust-geohash-from-relays: want a relay's address or prefix (192.0.2.7, 10.0.0.0/8), not "relay.example"`},
		{"trusted relays without pools", []string{"-trust-geohash-from-relays", "10.0.0.0/8"},
			`masqued: -trust-geohash-from-relays: needs -egress-pools: hints choose among their egress addresses`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := check(t, tc.args...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if lines[len(lines)-1] != tc.last {
				t.Errorf("stderr's last line %q, want %q", lines[len(lines)-1], tc.last)
			}
			if len(lines) > 3 {
				t.Errorf("stderr has %d lines, want a short usage at most:\n%s", len(lines), errOut)
			}
		})
	}
	out, errOut, code := check(t, "-h")
	if code != 0 || out != "" || !strings.HasPrefix(errOut, "usage: masqued [flags]\n") || !strings.Contains(errOut, "-tls-cert file") {
		t.Errorf("-h: exit %d, stdout %q, stderr %q; want 0 and the full usage on stderr", code, out, errOut)
	}
}
