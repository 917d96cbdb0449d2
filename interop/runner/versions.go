package runner

import (
	"context"
	"debug/buildinfo"
	"os/exec"
	"strings"
	"time"
)

// versions says which version of each program the run used, for the
// results: an interop matrix means little without them.
func (e *env) versions(ctx context.Context) map[string]string {
	v := map[string]string{}
	for _, ours := range []string{"masqued", "masque-client"} {
		if _, ok := e.bin[ours]; ok {
			v[ours] = "(this tree)"
		}
	}
	if path, ok := e.bin["masquego"]; ok {
		if info, err := buildinfo.ReadFile(path); err == nil {
			deps := map[string]string{}
			for _, d := range info.Deps {
				deps[d.Path] = d.Version
			}
			v["masque-go"] = deps["github.com/quic-go/masque-go"] + " (quic-go " + deps["github.com/quic-go/quic-go"] + ")"
		}
	}
	if e.needCurl {
		v["curl"] = word(ctx, 1, "curl", "--version") // curl 7.88.1 (x86_64-pc-linux-gnu) …
	}
	if e.chromium != "" {
		v["chromium"] = word(ctx, 1, e.chromium, "--version") // Chromium 156.0.8078.79 built on …
	}
	if e.firefox != "" {
		v["firefox"] = word(ctx, 2, e.firefox, "--version") // Mozilla Firefox 153.8.0esr
	}
	return v
}

// word runs a program and returns word i (from 0) of its stdout.
func word(ctx context.Context, i int, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	if f := strings.Fields(string(out)); i < len(f) {
		return f[i]
	}
	return "unknown"
}
