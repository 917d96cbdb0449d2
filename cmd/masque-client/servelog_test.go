package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/proxytest"
	"github.com/masqued/masqued/internal/testnet"
)

// TestServeLogsFailedTunnels: without -v, serve logs each tunnel that failed
// as one line with its cause and without its target; with -v, with it.
func TestServeLogsFailedTunnels(t *testing.T) {
	proxy := proxytest.Start(t, testnet.IPv4, true)
	down := closedPort(t)
	for _, verbose := range []bool{false, true} {
		t.Run(fmt.Sprint("verbose=", verbose), func(t *testing.T) {
			args := []string{"-proxy", proxy.URL, "-ca", proxy.CertFile, "serve", "-http", "127.0.0.1:0"}
			if verbose {
				args = append([]string{"-v"}, args...)
			}
			ctx, cancel := context.WithCancel(context.Background())
			// Files, which serve may write while the test reads them.
			dir := t.TempDir()
			stdout, stderr := createFile(t, dir, "stdout"), createFile(t, dir, "stderr")
			done := make(chan error, 1)
			go func() { done <- run(ctx, args, stdout, stderr) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			addr := strings.TrimPrefix(waitLine(t, stdout.Name(), "http listening on "), "http listening on ")

			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", down, down)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("CONNECT to a closed port: %s, want 502", resp.Status)
			}
			line := waitLine(t, stderr.Name(), "tunnel failed")
			t.Log(line)
			for _, w := range []string{"level=WARN", "error=connection_refused", "is anything listening"} {
				if !strings.Contains(line, w) {
					t.Errorf("log line lacks %q: %s", w, line)
				}
			}
			if got := strings.Contains(line, down); got != verbose {
				t.Errorf("log line names the target: %v, want %v: %s", got, verbose, line)
			}
		})
	}
}

func createFile(t *testing.T, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitLine returns the first whole line of file that contains substr, once
// one is there; 20 s bound a hang, hundreds of times what it takes.
func waitLine(t *testing.T, file, substr string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.Lines(string(b)) {
			if strings.Contains(l, substr) && strings.HasSuffix(l, "\n") {
				return strings.TrimSpace(l)
			}
		}
		select {
		case <-deadline:
			t.Fatalf("no line with %q in:\n%s", substr, b)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
