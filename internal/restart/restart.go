// Package restart replaces a running masqued with a new one (an upgrade, a
// changed configuration) without dropping a tunnel, on top of
// github.com/cloudflare/tableflip: the new process inherits the listening
// sockets, so no connection attempt meets a closed port.
//
// # The hand-over
//
// TCP hands over at once: from the moment the new process is ready it
// accepts the TCP front's new connections, while the old one stops
// accepting, sends GOAWAY on its HTTP/2 connections and finishes their
// tunnels.
//
// UDP cannot be handed over that way. Both processes hold the same socket,
// and QUIC connections live in the process that accepted them: a packet for
// one of the old process's connections read by the new process would be
// answered with a stateless reset, killing a tunnel. So the new process does
// not read the UDP socket until the old one has exited (WaitForParent). In
// between, the old process alone reads it: it keeps its QUIC connections,
// sends GOAWAY on them so clients put new requests elsewhere, and accepts
// no new QUIC connection. A client that dials meanwhile gets no QUIC answer
// and falls back to HTTP/2 over TCP, which the new process serves (the way
// browsers and masqued's client package race the two), or, if it only
// speaks HTTP/3, its Initial packets wait in the socket and are answered by
// the new process once the old one is gone. The old process exits when its
// last tunnel ends or when -drain-timeout runs out, whichever is first;
// tunnels still open then are cut, so the drain timeout should outlast the
// tunnels an operator wants to keep.
//
// Steering packets by connection ID between the two processes would let
// both serve QUIC during the drain, at the price of a packet relay or eBPF;
// the fallback above needs neither.
package restart

import (
	"context"
	"net"
	"time"

	"github.com/cloudflare/tableflip"
)

// Restarter owns the sockets a restart hands over. A nil *Restarter opens
// plain sockets and never restarts, for runs (such as in-process tests) that
// do not own the process. Its methods are safe for concurrent use.
type Restarter struct {
	upg *tableflip.Upgrader
}

// New prepares the process for restarts, taking over the sockets of the
// process that started it, if any. pidFile, if not "", gets the process ID
// once the process is Ready, so that a service manager can follow the
// restarts. Only one Restarter may exist in a process.
func New(pidFile string, readyTimeout time.Duration) (*Restarter, error) {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: readyTimeout})
	if err != nil {
		return nil, err
	}
	return &Restarter{upg: upg}, nil
}

// Listen returns the inherited listener for network and addr, or a new one.
func (r *Restarter) Listen(network, addr string) (net.Listener, error) {
	if r == nil {
		return net.Listen(network, addr)
	}
	return r.upg.Listen(network, addr)
}

// ListenPacket returns the inherited packet socket for network and addr, or
// a new one. In a process that has a parent, do not read it before
// WaitForParent returns.
func (r *Restarter) ListenPacket(network, addr string) (net.PacketConn, error) {
	if r == nil {
		return net.ListenPacket(network, addr)
	}
	return r.upg.ListenPacket(network, addr)
}

// HasParent reports whether this process took over from another.
func (r *Restarter) HasParent() bool { return r != nil && r.upg.HasParent() }

// Ready tells the parent, if any, that this process serves: the parent's
// Upgrade returns and it starts draining. Inherited sockets not asked for
// by then are closed. It also tells systemd (Type=notify) that this
// process is ready and is now the service's main process.
func (r *Restarter) Ready() error {
	if r == nil {
		return nil
	}
	if err := r.upg.Ready(); err != nil {
		return err
	}
	return notify(readyState())
}

// Stopping tells systemd that the service is shutting down for good; a
// process that hands over to a new one must not say it.
func (r *Restarter) Stopping() error {
	if r == nil {
		return nil
	}
	return notify("STOPPING=1")
}

// WaitForParent returns once the parent process, if any, has exited, or
// with ctx's error.
func (r *Restarter) WaitForParent(ctx context.Context) error {
	if r == nil {
		return nil
	}
	return r.upg.WaitForParent(ctx)
}

// Upgrade starts a new process from the same executable and arguments and
// waits until it is Ready. On success, Exit's channel is closed and this
// process should drain and exit.
func (r *Restarter) Upgrade() error {
	if r == nil {
		return errNoRestarts
	}
	return r.upg.Upgrade()
}

// Exit returns a channel closed after a successful Upgrade (never, for a
// nil Restarter).
func (r *Restarter) Exit() <-chan struct{} {
	if r == nil {
		return nil
	}
	return r.upg.Exit()
}

// Stop refuses further upgrades and releases the sockets; call it when the
// process shuts down for good.
func (r *Restarter) Stop() {
	if r != nil {
		r.upg.Stop()
	}
}

type restartError string

func (e restartError) Error() string { return string(e) }

const errNoRestarts = restartError("restart: this process cannot restart itself")
