package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// marionette is a client of Firefox's Marionette remote protocol, the one
// geckodriver speaks to Firefox (Debian has Firefox but no geckodriver):
// length-prefixed JSON over TCP, "LEN:[0, id, command, params]" answered by
// "LEN:[1, id, error, result]". Only what the runner needs is here. Calls
// are serialised; each is bounded by its context.
type marionette struct {
	mu   sync.Mutex // one call at a time; guards the fields below
	conn net.Conn
	r    *bufio.Reader
	id   int
}

// marionetteError is a command's error, as Firefox reports it.
type marionetteError struct {
	Kind    string `json:"error"`
	Message string `json:"message"`
}

func (e *marionetteError) Error() string { return "marionette: " + e.Kind + ": " + e.Message }

// dialMarionette connects to the Firefox that uses profile, once it has
// written the port it listens on (marionette.port 0 in user.js makes it
// pick a free one) to MarionetteActivePort there.
func dialMarionette(ctx context.Context, profile string) (*marionette, error) {
	portFile := filepath.Join(profile, "MarionetteActivePort")
	var port int
	for {
		b, err := os.ReadFile(portFile)
		if err == nil {
			if port, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && port > 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("firefox wrote no Marionette port to %s: %w", portFile, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	m := &marionette{conn: conn, r: bufio.NewReader(conn)}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var hello struct {
		Protocol int `json:"marionetteProtocol"`
	}
	b, err := m.read()
	if err == nil {
		err = json.Unmarshal(b, &hello)
	}
	if err != nil || hello.Protocol != 3 {
		conn.Close()
		return nil, fmt.Errorf("marionette greeting %q: %v, want protocol 3", b, err)
	}
	return m, nil
}

// read reads one "LEN:JSON" message.
func (m *marionette) read() ([]byte, error) {
	n, err := m.r.ReadString(':')
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil || size < 0 || size > 64<<20 {
		return nil, fmt.Errorf("marionette: bad message length %q", n)
	}
	b := make([]byte, size)
	_, err = io.ReadFull(m.r, b)
	return b, err
}

// call sends a command and decodes its result into result (nil: ignored).
func (m *marionette) call(ctx context.Context, command string, params, result any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	m.id++
	msg, err := json.Marshal([]any{0, m.id, command, params})
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { m.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := fmt.Fprintf(m.conn, "%d:%s", len(msg), msg); err != nil {
		return fmt.Errorf("marionette %s: %w", command, err)
	}
	// A call whose context ended leaves the connection's deadline past, so
	// that every later call fails too: replies never get out of step.
	b, err := m.read()
	if err != nil {
		return fmt.Errorf("marionette %s: %w", command, errors.Join(err, ctx.Err()))
	}
	var reply []json.RawMessage
	var id int
	if err := json.Unmarshal(b, &reply); err != nil || len(reply) != 4 || json.Unmarshal(reply[1], &id) != nil || id != m.id {
		return fmt.Errorf("marionette %s: bad reply %q", command, clip(string(b)))
	}
	if string(reply[2]) != "null" {
		e := new(marionetteError)
		if err := json.Unmarshal(reply[2], e); err != nil {
			return fmt.Errorf("marionette %s: bad error %q", command, reply[2])
		}
		return e
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(reply[3], result)
}

// script runs JavaScript in the current context and window (arguments are
// in `arguments`), returning its value into result.
func (m *marionette) script(ctx context.Context, js string, result any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	var v struct{ Value json.RawMessage }
	if err := m.call(ctx, "WebDriver:ExecuteScript", map[string]any{"script": js, "args": args}, &v); err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(v.Value, result)
}

func (m *marionette) close() error { return m.conn.Close() }
