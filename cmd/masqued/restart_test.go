package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/client"
	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

// TestRestartOnSIGHUP restarts masqued with SIGHUP while 50 TCP tunnels
// (half over HTTP/3, half over HTTP/2) and 10 UDP tunnels (HTTP/3 to an
// origin inside CONNECT-UDP over HTTP/3) transfer data, and checks that no
// established tunnel is lost, that new tunnels work while the old process
// drains (over TCP, which the new process serves at once) and after it
// (over HTTP/3 too) with the same self-signed certificate, that the old
// process exits 0, and that the access log, with client addresses, names no
// target.
func TestRestartOnSIGHUP(t *testing.T) {
	bin := buildMasqued(t)
	becomeSubreaper(t)
	echo := testnet.TCPEcho(t, testnet.IPv4)
	udpEcho := testnet.UDPEcho(t, testnet.IPv4)
	const body = 64 << 10
	origin := testnet.H3Origin(t, testnet.IPv4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, body))
	}))
	pidFile := filepath.Join(t.TempDir(), "masqued.pid")
	// The self-signed certificate, which the new process must keep.
	p := startProcess(t, bin, "-listen", "127.0.0.1:0", "-allow-private-targets", "-drain-timeout", "40s",
		"-pid-file", pidFile, "-access-log", "client", "-log-format", "json")
	addr := p.line(t, "listening on ")
	certPath := p.line(t, "certificate ")
	tlsConf := trust(t, certPath)
	parent := p.cmd.Process.Pid
	eventually(t, 10*time.Second, "the PID file", func() bool { return pidFrom(pidFile) == parent })
	ctx := testnet.Context(t, 2*time.Minute)

	c3, c2 := dialFronts(t, ctx, addr, tlsConf)

	// The tunnels established before the restart, all transferring
	// through it.
	const pace = 5 * time.Second
	var ts tunnels
	ts.tcpTransfers(t, ctx, 50, c3, c2, echo.String(), 256<<10, pace)
	for i := range 10 {
		u, err := c3.ListenUDP(ctx, origin.String())
		if err != nil {
			t.Fatal(err)
		}
		inner := u.HTTP3(testnet.NewCert(t).ClientTLS(), nil)
		ts.Go(fmt.Sprintf("UDP tunnel %d", i), func(carried func()) error {
			defer u.Close()
			defer inner.Close()
			n := 0
			for end := time.Now().Add(pace); time.Now().Before(end); n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+origin.String()+"/", nil)
				resp, err := inner.RoundTrip(req)
				if err != nil {
					return fmt.Errorf("request %d: %w", n, err)
				}
				got, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || got != body {
					return fmt.Errorf("request %d: %d bytes, %v", n, got, err)
				}
				carried()
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		})
	}

	ts.Underway() // SIGHUP finds every tunnel carrying data
	child := restartWithSIGHUP(t, p, pidFile)
	if line := p.line(t, "listening on "); line != addr {
		t.Errorf("the new process listens on %s, want %s", line, addr)
	}
	if line := p.line(t, "certificate "); line != certPath {
		t.Errorf("the new process's certificate is %s, want %s", line, certPath)
	}

	// While the old process drains: new tunnels, as a browser would open
	// them (HTTP/3 raced against HTTP/2).
	select {
	case <-p.exited:
		t.Fatal("the old process exited before its tunnels ended")
	default:
	}
	during := newTunnels(t, ctx, addr, tlsConf, client.Auto, echo, udpEcho)
	t.Logf("during the drain, new tunnels went over %s", during)
	select {
	case <-p.exited:
		t.Error("the old process exited before the new tunnels were through: they were not opened during its drain")
	default:
	}

	if err := ts.Wait(); err != nil {
		t.Errorf("established tunnels lost: %v", err)
	}
	if err := p.wait(t, 45*time.Second); err != nil {
		t.Fatalf("the old process: %v\n%s", err, p.log(t))
	}

	// After: the new process serves both fronts.
	eventually(t, 10*time.Second, "HTTP/3 from the new process", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := h3.Dial(qctx, "https://"+addr, h3.Config{TLSConfig: tlsConf})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	newTunnels(t, ctx, addr, tlsConf, client.HTTP3, echo, udpEcho)
	newTunnels(t, ctx, addr, tlsConf, client.HTTP2, echo, udpEcho)

	stopRestarted(t, child)
	log := p.log(t)
	_, withClient := checkLogPrivacy(t, log, addr, echo.String(), udpEcho.String(), origin.String())
	if n := strings.Count(log, `"msg":"tunnel"`); n < 64 || withClient < 64 {
		t.Errorf("%d access log lines, %d with a client address; want 64 or more of each", n, withClient)
	}
}

// becomeSubreaper makes the test the reaper of a restarted process once
// its parent is gone.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// restartWithSIGHUP sends p SIGHUP and returns the new process's ID once it
// has written pidFile; the new process is killed at cleanup.
func restartWithSIGHUP(t *testing.T, p *process, pidFile string) int {
	t.Helper()
	parent := p.cmd.Process.Pid
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var child int
	eventually(t, 30*time.Second, "the new process to be ready", func() bool {
		child = pidFrom(pidFile)
		return child != 0 && child != parent
	})
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	return child
}

// stopRestarted stops the restarted process child with SIGTERM and checks
// that it exits 0.
func stopRestarted(t *testing.T, child int) {
	t.Helper()
	if err := syscall.Kill(child, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(child, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Errorf("the new process: %v, exit status %d", err, ws.ExitStatus())
	}
}

// newTunnels opens a TCP and a UDP tunnel over a new connection of
// transport tr and checks that both carry data; it returns the transport
// the connection used.
func newTunnels(t *testing.T, ctx context.Context, addr string, tlsConf *tls.Config, tr client.Transport, echo *net.TCPAddr, udpEcho *net.UDPAddr) client.Transport {
	t.Helper()
	d := &client.Dialer{TLSConfig: tlsConf, Transport: tr}
	c, err := d.Dial(ctx, "https://"+addr)
	if err != nil {
		t.Fatalf("new connection (%s): %v", tr, err)
	}
	defer c.Close()
	tc, err := c.DialTCP(ctx, echo.String())
	if err != nil {
		t.Fatalf("new TCP tunnel over %s: %v", c.Transport(), err)
	}
	if err := transfer(tc, 64<<10, 100*time.Millisecond, func() {}); err != nil {
		t.Fatalf("new TCP tunnel over %s: %v", c.Transport(), err)
	}
	u, err := c.ListenUDP(ctx, udpEcho.String())
	if err != nil {
		t.Fatalf("new UDP tunnel over %s: %v", c.Transport(), err)
	}
	defer u.Close()
	buf := make([]byte, 100)
	for i := 0; ; i++ {
		if _, err := u.WriteTo([]byte("ping"), nil); err != nil {
			t.Fatal(err)
		}
		u.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := u.ReadFrom(buf); err == nil && string(buf[:n]) == "ping" {
			break
		} else if i == 5 {
			t.Fatalf("new UDP tunnel over %s: %v", c.Transport(), err)
		}
	}
	return c.Transport()
}
