package localproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/testnet"
)

// openTunnels opens a SOCKS5 CONNECT, a SOCKS5 UDP association and an HTTP
// CONNECT tunnel through e, and returns their client connections.
func openTunnels(t *testing.T, e *env) []net.Conn {
	t.Helper()
	echo := testnet.TCPEcho(t, testnet.IPv4)
	s1 := dialSOCKS(t, e.socksAddr)
	if rep, _ := s1.request(cmdConnect, ipAddr(echo.AddrPort())); rep != replySucceeded {
		t.Fatalf("connect: reply %d", rep)
	}
	s2 := dialSOCKS(t, e.socksAddr)
	if rep, _ := s2.request(cmdUDPAssociate, socksAddr{ip: netip.IPv4Unspecified()}); rep != replySucceeded {
		t.Fatalf("udp associate: reply %d", rep)
	}
	h, err := net.Dial("tcp", e.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(h, "CONNECT "+echo.String()+" HTTP/1.1\r\nHost: "+echo.String()+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(h), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("http connect: %v %v", resp, err)
	}
	return []net.Conn{s1.c, s2.c, h}
}

// expectClosed checks that the server ends each of cs.
func expectClosed(t *testing.T, cs []net.Conn) {
	t.Helper()
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Errorf("conn %d: %v, want its end", i, err)
		}
	}
}

func TestCloseEndsTunnels(t *testing.T) {
	e := start(t, testnet.IPv4, true, nil)
	cs := openTunnels(t, e)
	if err := errors.Join(e.socks.Close(), e.httpSrv.Close()); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, cs)
	// Closed servers refuse to serve again.
	if err := e.socks.Serve(testnet.TCP(t, testnet.IPv4)); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

func TestShutdownCutsAtDeadline(t *testing.T) {
	e := start(t, testnet.IPv4, true, nil)
	cs := openTunnels(t, e)
	for _, s := range []interface{ Shutdown(context.Context) error }{e.socks, e.httpSrv} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := s.Shutdown(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with open tunnels: %v, want the deadline", err)
		}
	}
	expectClosed(t, cs)
}

func TestShutdownWaitsForTunnels(t *testing.T) {
	e := start(t, testnet.IPv4, true, nil)
	cs := openTunnels(t, e)
	go func() {
		time.Sleep(100 * time.Millisecond)
		for _, c := range cs {
			c.Close()
		}
	}()
	ctx := testnet.Context(t, 10*time.Second)
	if err := errors.Join(e.socks.Shutdown(ctx), e.httpSrv.Shutdown(ctx)); err != nil {
		t.Fatal(err)
	}
}
