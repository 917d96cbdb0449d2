package h3proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/masqued/masqued/client/h3"
	"github.com/masqued/masqued/internal/testnet"
	"github.com/masqued/masqued/tunnel"
)

// TestShutdownDrains: Shutdown sends GOAWAY, after which the client opens no
// new tunnels, while an open tunnel keeps working until it ends; then
// Shutdown returns.
func TestShutdownDrains(t *testing.T) {
	echo := testnet.TCPEcho(t, testnet.IPv4)
	p, err := tunnel.New(tunnel.Config{Policy: tunnel.Policy{AllowPrivate: true}})
	if err != nil {
		t.Fatal(err)
	}
	pc := testnet.UDP(t, testnet.IPv4)
	srv := &Server{Proxy: p, TLSConfig: testnet.NewCert(t).ServerTLS()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	ctx := testContext(t)
	c, err := h3.Dial(ctx, "https://"+pc.LocalAddr().String(), h3.Config{TLSConfig: testnet.NewCert(t).ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := c.DialTCP(ctx, echo.String())
	if err != nil {
		t.Fatal(err)
	}

	shutdown := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(sctx)
	}()
	eventually(t, "the client to see GOAWAY", func() bool { return !c.Usable() })
	if _, err := c.DialTCP(ctx, echo.String()); !errors.Is(err, h3.ErrGoAway) {
		t.Errorf("new tunnel after GOAWAY: %v, want h3.ErrGoAway", err)
	}
	// The open tunnel still carries data both ways.
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("echo during drain: %q, %v", buf, err)
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while a tunnel was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	conn.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last tunnel ended")
	}
}
