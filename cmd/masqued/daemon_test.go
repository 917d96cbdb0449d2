package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
)

// The tests in this file drive the server type directly, in-process, on
// loopback: Serve, Shutdown and Close, without signals.

// newTestServer builds a server as runWith does, with -admin-listen, a
// self-signed certificate of the test's own and args; its start-up lines go
// to stdout.
func newTestServer(t *testing.T, stdout io.Writer, args ...string) *server {
	t.Helper()
	args = append([]string{"-listen", "127.0.0.1:0", "-allow-private-targets", "-admin-listen", "127.0.0.1:0",
		"-cert-out", filepath.Join(t.TempDir(), "cert.pem")}, args...)
	c, err := parseFlags(args, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.prepare(testWriter{t}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	srv, err := newServer(c, s, nil, stdout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// serving is a Serve call in a goroutine of the test's; it ends with the
// test at the latest.
type serving struct {
	done chan struct{}
	err  error // Serve's, set before done is closed
}

func serve(t *testing.T, srv *server) *serving {
	sv := &serving{done: make(chan struct{})}
	go func() {
		defer close(sv.done)
		sv.err = srv.Serve()
	}()
	t.Cleanup(func() { srv.Close(); <-sv.done })
	return sv
}

// wait returns Serve's error once it returns.
func (sv *serving) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-sv.done:
		return sv.err
	case <-time.After(30 * time.Second): // a hang bound, far beyond the few milliseconds it takes
		t.Fatal("Serve did not return")
		return nil
	}
}

// readyz returns what the admin listener's /readyz answers, or "" if it
// does not.
func readyz(srv *server) string {
	// No connection outlives the request, for goleak.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + srv.adminL.Addr().String() + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// echoOnce sends a line through c, a tunnel to an echo server, and reads it
// back.
func echoOnce(c net.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != "ping\n" {
		return errors.New("the echo differs")
	}
	return nil
}

// openTunnels opens a TCP tunnel to echo over each front of srv and checks
// that both carry data.
func openTunnels(t *testing.T, ctx context.Context, srv *server, echo string) []net.Conn {
	t.Helper()
	h3, h2 := dialFronts(t, ctx, srv.addr().String(), trust(t, srv.certPath))
	var conns []net.Conn
	for _, dial := range []func(context.Context, string) (net.Conn, error){h3.DialTCP, h2.DialTCP} {
		c, err := dial(ctx, echo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := echoOnce(c); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// TestServerShutdown: Shutdown turns /readyz to "draining" and waits for
// the open tunnels on both fronts, which go on carrying data, and returns
// once they end; Serve then returns http.ErrServerClosed. Serve printed the
// start-up lines.
func TestServerShutdown(t *testing.T) {
	var stdout strings.Builder
	srv := newTestServer(t, &stdout)
	sv := serve(t, srv)
	eventually(t, 10*time.Second, "/readyz ready", func() bool { return readyz(srv) == "ready" })
	ctx := testnet.Context(t, time.Minute)
	conns := openTunnels(t, ctx, srv, testnet.TCPEcho(t, testnet.IPv4).String())

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	eventually(t, 10*time.Second, "/readyz draining", func() bool { return readyz(srv) == "draining" })
	for i, c := range conns {
		if err := echoOnce(c); err != nil {
			t.Errorf("tunnel %d during the drain: %v", i, err)
		}
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned with tunnels open: %v", err)
	default:
	}
	for _, c := range conns {
		c.Close()
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second): // a hang bound: the drain ends as the tunnels do
		t.Fatal("Shutdown did not return after the tunnels ended")
	}
	if err := sv.wait(t); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v, want http.ErrServerClosed", err)
	}
	want := "listening on " + srv.addr().String() + "\ncertificate " + srv.certPath + "\nadmin on " + srv.adminL.Addr().String() + "\n"
	if stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
}

// TestServerClose: Close ends the open tunnels on both fronts at once, and
// Serve returns http.ErrServerClosed.
func TestServerClose(t *testing.T) {
	srv := newTestServer(t, io.Discard)
	sv := serve(t, srv)
	ctx := testnet.Context(t, time.Minute)
	conns := openTunnels(t, ctx, srv, testnet.TCPEcho(t, testnet.IPv4).String())
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang bound: the tunnel ends at once
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("tunnel %d after Close: read %v, want its end", i, err)
		}
	}
	if err := sv.wait(t); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v, want http.ErrServerClosed", err)
	}
}

// TestServerShutdownBeforeServe: a server shut down before it serves does
// not start: Serve returns http.ErrServerClosed and prints nothing.
func TestServerShutdownBeforeServe(t *testing.T) {
	var stdout strings.Builder
	srv := newTestServer(t, &stdout)
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := srv.Serve(); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v, want http.ErrServerClosed", err)
	}
	if stdout.Len() > 0 {
		t.Errorf("printed %q", stdout.String())
	}
}

// TestServerFrontFails: when a front stops on its own (here its listener
// is closed under it), Serve closes the rest and returns the front's error.
func TestServerFrontFails(t *testing.T) {
	srv := newTestServer(t, io.Discard)
	sv := serve(t, srv)
	eventually(t, 10*time.Second, "/readyz ready", func() bool { return readyz(srv) == "ready" })
	srv.tl.Close()
	err := sv.wait(t)
	if err == nil || errors.Is(err, http.ErrServerClosed) || !strings.HasPrefix(err.Error(), "serving: ") {
		t.Errorf("Serve: %v, want the TCP front's error", err)
	}
	if got := readyz(srv); got != "" {
		t.Errorf("/readyz answers %q after Serve returned", got)
	}
}
