package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/cli"
	"github.com/masqued/masqued/privacypass"
	"github.com/masqued/masqued/privacypass/ppserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs pp-issuer with args until the test ends and returns its
// http:// base URL.
func start(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.CloseWithError(err)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		pr.Close()
		if err := <-done; err != nil {
			t.Errorf("pp-issuer: %v", err)
		}
	})
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("pp-issuer printed nothing: %v", sc.Err())
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening on ")
	if !ok {
		t.Fatalf("line %q", sc.Text())
	}
	return "http://" + addr
}

// TestSplitDeployment runs an issuer and, in front of it, an attester with
// an account made by new-account, and mints a token through them.
func TestSplitDeployment(t *testing.T) {
	dir := t.TempDir()
	accounts := filepath.Join(dir, "accounts")
	var out strings.Builder
	if err := run(t.Context(), []string{"new-account", "-accounts", accounts, "alice"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String())
	if fi, err := os.Stat(accounts); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file: %v", err)
	}
	if b, _ := os.ReadFile(accounts); strings.Contains(string(b), key) {
		t.Fatal("the accounts file holds the API key itself")
	}

	issuer := start(t, "-keys", filepath.Join(dir, "keys"))
	attester := start(t, "-accounts", accounts, "-issuer-url", issuer+privacypass.DefaultRequestPath)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	cl, err := privacypass.NewClient(privacypass.ClientConfig{AttesterURL: attester + privacypass.DefaultRequestPath,
		DirectoryURL: issuer + privacypass.DirectoryPath, APIKey: key, HTTPClient: hc, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res, err := hc.Get(issuer + privacypass.DirectoryPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	d, err := privacypass.ParseDirectory(b)
	if err != nil || len(d.Keys) != 2 {
		t.Fatalf("directory: %v, %s", err, b)
	}
	rd, err := ppserver.NewRedeemer(ppserver.RedeemerConfig{IssuerName: "issuer.example",
		Keys: ppserver.StaticKeys{d.Current(privacypass.TypePublic, time.Now())}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodConnect, "https://proxy.example", nil)
	var ref *ppserver.Refusal
	if !errors.As(rd.Authenticate(req), &ref) {
		t.Fatal("no refusal without a token")
	}
	cred, err := cl.Authorize(t.Context(), ref.Header().Values("Proxy-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Proxy-Authorization", cred)
	if err := rd.Authenticate(req); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-accounts", "x"},
		{"-keys", "x", "-tls-cert", "c.pem"},
		{"-keys", "x", "-rate", "0"},
		{"-keys", "x", "extra"},
		{"new-account", "alice"},
	} {
		var stderr strings.Builder
		err := run(t.Context(), args, io.Discard, &stderr)
		var u *cli.UsageError
		if !errors.As(err, &u) {
			t.Errorf("%q: %v, want a usage error", args, err)
			continue
		}
		// A short usage, then the error last, where it stays in sight.
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "pp-issuer") || !strings.HasSuffix(last, ": "+err.Error()) || len(lines) > 4 {
			t.Errorf("%q printed %q, want a short usage and then the error", args, stderr.String())
		}
	}
	if err := run(t.Context(), []string{"-accounts", "/nonexistent/accounts", "-issuer-url", "http://x/"}, io.Discard, io.Discard); err == nil {
		t.Error("a missing accounts file: no error")
	}
}
