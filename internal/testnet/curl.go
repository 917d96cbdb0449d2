package testnet

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Curl runs curl with args (after -sS --fail) for up to 20 seconds and
// returns its stdout; a failure fails the test. Without curl the test is
// skipped, or failed where CI=true (make test installs curl there).
func Curl(t testing.TB, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is missing; make test installs it")
		}
		t.Skip("curl is missing")
	}
	ctx := Context(t, 20*time.Second)
	out, err := exec.CommandContext(ctx, path, append([]string{"-sS", "--fail", "--max-time", "15"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %q: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("curl %q: %v", args, err)
	}
	return string(out)
}
