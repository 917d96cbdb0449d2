package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
)

// TestDrainOnSIGTERM: with 20 tunnels (10 over HTTP/3, 10 over HTTP/2)
// transferring, SIGTERM makes masqued refuse new tunnels (GOAWAY on both
// fronts, no new connections) while the open ones
// finish their transfers; then it exits 0 because they ended, not because
// the drain deadline passed: its log has no "drain incomplete". The
// deadline, ten times the transfers' 3 s, only bounds a drain that hangs.
// Its access log, with targets, holds no client address.
func TestDrainOnSIGTERM(t *testing.T) {
	bin := buildMasqued(t)
	echo := testnet.TCPEcho(t, testnet.IPv4)
	const drainTimeout = 30 * time.Second
	p := startProcess(t, bin, "-listen", "127.0.0.1:0", "-allow-private-targets", "-drain-timeout", drainTimeout.String(),
		"-access-log", "target", "-log-format", "json", "-log-level", "debug")
	addr := p.line(t, "listening on ")
	tlsConf := trust(t, p.line(t, "certificate "))
	ctx := testnet.Context(t, time.Minute)

	c3, c2 := dialFronts(t, ctx, addr, tlsConf)
	var ts tunnels
	ts.tcpTransfers(t, ctx, 20, c3, c2, echo.String(), 256<<10, 3*time.Second)
	ts.Underway() // SIGTERM finds every tunnel carrying data
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New tunnels are refused: the TCP port is closed, the HTTP/3
	// connection is gone away, and no new QUIC connection is accepted.
	eventually(t, 5*time.Second, "new TCP connections refused", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	for name, dial := range map[string]func(context.Context, string) (net.Conn, error){"HTTP/3": c3.DialTCP, "HTTP/2": c2.DialTCP} {
		eventually(t, 5*time.Second, "new tunnels on the "+name+" connection refused (GOAWAY)", func() bool {
			c, err := dial(ctx, echo.String())
			if err == nil {
				c.Close()
			}
			return err != nil
		})
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if c, err := h3.Dial(qctx, "https://"+addr, h3.Config{TLSConfig: tlsConf}); err == nil {
		c.Close()
		t.Error("a new QUIC connection was accepted while draining")
	}

	if err := ts.Wait(); err != nil {
		t.Errorf("tunnels lost in the drain: %v", err)
	}
	if err := p.wait(t, drainTimeout+10*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log(t))
	}
	log := p.log(t)
	if strings.Contains(log, "drain incomplete") {
		t.Errorf("the drain waited for its deadline, not for the tunnels:\n%s", log)
	}
	withTarget, _ := checkLogPrivacy(t, log, addr, echo.String())
	if n := strings.Count(log, `"msg":"tunnel"`); n < 20 || withTarget < 20 {
		t.Errorf("%d access log lines, %d with the target; want 20 of each\n%s", n, withTarget, log)
	}
}
