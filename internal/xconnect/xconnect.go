// Package xconnect turns on, and proves, HTTP/2 extended CONNECT (RFC 8441)
// in net/http's server, which CONNECT-UDP over HTTP/2 needs (RFC 9298 §3.3).
//
// Go 1.26 enables it only when the GODEBUG environment variable holds
// http2xconnect=1 when the process starts: net/http reads it in a package
// init, a //go:debug directive is rejected as an unknown setting, and
// os.Setenv in main is too late (golang/go#71128). So a program that serves
// HTTP/2 calls Enable first thing in main (or TestMain), which re-executes the
// program with the variable set; users need not know about it. Check then
// proves, with a real HTTP/2 server over an in-memory pipe, that
// SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised, so a Go release that
// changes the mechanism fails loudly at start-up instead of silently serving
// no CONNECT-UDP.
package xconnect

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// Setting is the GODEBUG setting that turns extended CONNECT on.
const Setting = "http2xconnect=1"

// Enable re-executes the running program with Setting added to GODEBUG,
// unless it is there already, in which case it returns nil. It returns only
// on failure; on success the program starts again from the top with the same
// arguments, environment (plus the setting) and process ID.
func Enable() error {
	godebug := os.Getenv("GODEBUG")
	if hasSetting(godebug) {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("xconnect: finding own executable to re-execute: %w", err)
	}
	if godebug != "" {
		godebug += ","
	}
	env := []string{"GODEBUG=" + godebug + Setting}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") { // Go reads the first of duplicates
			env = append(env, kv)
		}
	}
	return fmt.Errorf("xconnect: re-executing with GODEBUG=%s: %w", Setting, syscall.Exec(exe, os.Args, env))
}

func hasSetting(godebug string) bool {
	for s := range strings.SplitSeq(godebug, ",") {
		if strings.TrimSpace(s) == Setting {
			return true
		}
	}
	return false
}

var (
	checkOnce sync.Once
	checkErr  error
)

// Check reports whether net/http's HTTP/2 server advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL. The answer cannot change while the
// program runs, so the probe runs once.
func Check() error {
	checkOnce.Do(func() { checkErr = probe() })
	return checkErr
}

// ErrDisabled is Check's answer when extended CONNECT is off.
var ErrDisabled = errors.New("net/http's HTTP/2 server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL: start the process with GODEBUG=" + Setting + " (xconnect.Enable does this)")

// probe serves one unencrypted HTTP/2 connection over a pipe and reads the
// server's first SETTINGS frame.
func probe() error {
	client, server := net.Pipe()
	defer client.Close()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.NotFoundHandler()}
	l := &oneConnListener{conn: server, closed: make(chan struct{})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	// Write and read concurrently: a pipe has no buffer.
	werr := make(chan error, 1)
	go func() {
		if _, err := client.Write([]byte(http2.ClientPreface)); err != nil {
			werr <- err
			return
		}
		werr <- http2.NewFramer(client, nil).WriteSettings()
	}()
	fr := http2.NewFramer(nil, bufio.NewReader(client))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("xconnect: probing the HTTP/2 server: %w", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, _ := sf.Value(http2.SettingEnableConnectProtocol)
			if err := <-werr; err != nil {
				return fmt.Errorf("xconnect: probing the HTTP/2 server: %w", err)
			}
			if v != 1 {
				return ErrDisabled
			}
			return nil
		}
	}
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	once   sync.Once
	conn   net.Conn
	closed chan struct{}
	close  sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
