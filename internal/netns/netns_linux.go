// Package netns makes network namespaces for tests: each test builds its
// own, joined by veth pairs on addresses of its own choosing, and removes
// them when it ends. Nothing it makes is visible outside those namespaces.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Require skips t, saying why, unless the process can make namespaces and
// TUN devices (Missing). Where CI=true it fails instead: CI runs as root,
// so the test must run there.
func Require(t testing.TB) {
	t.Helper()
	why := Missing()
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("network-namespace test cannot run: %s", why)
	}
	t.Skipf("network-namespace test skipped: %s", why)
}

// Missing says what the process lacks to make namespaces and TUN devices
// (root or CAP_NET_ADMIN, /dev/net/tun, iproute2's ip), or "".
func Missing() string {
	switch _, err := exec.LookPath("ip"); {
	case err != nil:
		return "iproute2's ip is missing"
	case !hasNetAdmin():
		return "needs CAP_NET_ADMIN (run as root)"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "/dev/net/tun is missing"
	}
	return ""
}

func hasNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(v), "%x", &caps)
			return caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return false
}

var seq atomic.Int64

// NS is a network namespace made by New.
type NS struct {
	Name string
}

// New makes a namespace with its loopback up, removed at the end of t.
func New(t testing.TB, role string) *NS {
	t.Helper()
	n, err := Make(role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
	return n
}

// Make makes a namespace with its loopback up; Remove it when done.
func Make(role string) (*NS, error) {
	n := &NS{Name: fmt.Sprintf("mq%d-%d-%s", os.Getpid(), seq.Add(1), role)}
	if _, err := command("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if _, err := n.Exec("ip", "link", "set", "lo", "up"); err != nil {
		_ = n.Remove()
		return nil, err
	}
	return n, nil
}

// Remove removes the namespace; its interfaces go once no process is left
// in it.
func (n *NS) Remove() error {
	_, err := command("ip", "netns", "del", n.Name)
	return err
}

func command(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Exec runs a command inside n and returns its output.
func (n *NS) Exec(name string, args ...string) (string, error) {
	return command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside n, failing t if it fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Exec(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Link joins n's interface ifn (address addr, CIDR) and peer's interface
// peerIfn (address peerAddr) with a veth pair, failing t if it cannot.
func (n *NS) Link(t testing.TB, ifn, addr string, peer *NS, peerIfn, peerAddr string) {
	t.Helper()
	if err := n.Connect(ifn, addr, peer, peerIfn, peerAddr); err != nil {
		t.Fatal(err)
	}
}

// Connect joins n's interface ifn (addresses addr, comma-separated CIDRs)
// and peer's interface peerIfn (peerAddr) with a veth pair.
func (n *NS) Connect(ifn, addr string, peer *NS, peerIfn, peerAddr string) error {
	if _, err := command("ip", "link", "add", ifn, "netns", n.Name, "type", "veth", "peer", "name", peerIfn, "netns", peer.Name); err != nil {
		return err
	}
	for _, s := range []struct {
		ns        *NS
		ifn, cidr string
	}{{n, ifn, addr}, {peer, peerIfn, peerAddr}} {
		for _, a := range strings.Split(s.cidr, ",") {
			if _, err := s.ns.Exec("ip", "addr", "add", a, "dev", s.ifn, "nodad"); err != nil {
				return err
			}
		}
		if _, err := s.ns.Exec("ip", "link", "set", s.ifn, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Do runs f on a thread inside n and returns its error: sockets, TUN
// devices and netlink connections that f makes belong to n and stay there.
// f must not call t's Fatal methods.
func (n *NS) Do(f func() error) error {
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		return err
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return
		}
		defer self.Close()
		if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("entering namespace %s: %w", n.Name, err)
			return
		}
		defer func() {
			if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread() // else the thread ends with the goroutine
			}
		}()
		err = f()
	}()
	return <-done
}
