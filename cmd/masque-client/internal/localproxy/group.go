package localproxy

import (
	"context"
	"errors"
	"net"
	"sync"
)

// group tracks a server's listeners, connections and goroutines, so that
// Close can end them all and wait. The zero group is ready to use.
type group struct {
	mu        sync.Mutex
	closed    bool                      // guarded by mu; set by closeListeners
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[net.Conn]struct{}     // guarded by mu; connections in use
	ctx       context.Context           // guarded by mu; done at close
	cancel    context.CancelFunc        // guarded by mu
	wg        sync.WaitGroup            // goroutines of goConn and enter
}

// context returns a context that is done once the group closes.
func (g *group) context() context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.contextLocked()
}

func (g *group) contextLocked() context.Context {
	if g.ctx == nil {
		g.ctx, g.cancel = context.WithCancel(context.Background())
	}
	return g.ctx
}

// addListener tracks l until removeListener, or returns false if the group
// is closed.
func (g *group) addListener(l net.Listener) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.listeners == nil {
		g.listeners = map[net.Listener]struct{}{}
	}
	g.listeners[l] = struct{}{}
	return true
}

func (g *group) removeListener(l net.Listener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.listeners, l)
}

// isClosed reports whether close or closeListeners has been called.
func (g *group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// track adds c to the connections that close closes, or closes c and
// returns false if the group is closed. untrack undoes it.
func (g *group) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return false
	}
	if g.conns == nil {
		g.conns = map[net.Conn]struct{}{}
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *group) untrack(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
}

// goConn runs f(c) in a goroutine that close waits for, with c tracked and
// closed when f returns. If the group is closed, it closes c instead.
func (g *group) goConn(c net.Conn, f func(net.Conn)) {
	if !g.enter() {
		c.Close()
		return
	}
	go func() {
		defer g.wg.Done()
		if !g.track(c) {
			return
		}
		defer func() { g.untrack(c); c.Close() }()
		f(c)
	}()
}

// enter registers a goroutine that close waits for, or returns false if the
// group is closed; the goroutine calls g.wg.Done when it ends.
func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// closeListeners marks the group closed, so no more connections start, and
// closes its listeners.
func (g *group) closeListeners() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	var errs []error
	for l := range g.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close closes the listeners and every tracked connection, cancels the
// context, and waits for the group's goroutines.
func (g *group) close() error {
	err := g.closeListeners()
	g.mu.Lock()
	g.contextLocked()
	g.cancel()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

// wait waits until the group's goroutines have ended or ctx is done.
func (g *group) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// The caller closes the group next, which ends the waiter.
		return ctx.Err()
	}
}

// limitListener is netutil.LimitListener with connections that keep their
// CloseWrite, which splice and lingerClose need: at most cap(sem)
// connections accepted and not yet closed.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{} // closed by Close, to stop waiting for room
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its room back to its limitListener when it closes.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// CloseWrite half-closes the connection, if it can be.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
