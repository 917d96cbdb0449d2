package xconnect

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("XCONNECT_TEST_CHILD") == "" {
		// The parent runs the tests with the setting, as masqued does.
		if err := Enable(); err != nil {
			panic(err)
		}
	}
	goleak.VerifyTestMain(m)
}

func TestCheckAdvertised(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckWithoutSetting runs this test binary again without the setting
// and expects Check to fail: the probe must be able to tell.
func TestCheckWithoutSetting(t *testing.T) {
	if os.Getenv("XCONNECT_TEST_CHILD") != "" {
		if err := Check(); !errors.Is(err, ErrDisabled) {
			t.Fatalf("Check without %s = %v, want ErrDisabled", Setting, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckWithoutSetting$", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "XCONNECT_TEST_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestHasSetting(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                        false,
		Setting:                   true,
		"http2debug=1," + Setting: true,
		"http2xconnect=0":         false,
		"http2xconnect=10":        false,
		" http2xconnect=1 ,x=1":   true,
		"foohttp2xconnect=1":      false,
	} {
		if got := hasSetting(godebug); got != want {
			t.Errorf("hasSetting(%q) = %v, want %v", godebug, got, want)
		}
	}
}
