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
// TUN devices (root or CAP_NET_ADMIN, /dev/net/tun, iproute2's ip). Where
// CI=true it fails instead: CI runs as root, so the test must run there.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("ip"); err != nil {
		why = "iproute2's ip is missing"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = "/dev/net/tun is missing"
	} else if err := unix.Unshare(0); err != nil || !hasNetAdmin() {
		why = "needs CAP_NET_ADMIN (run as root)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("network-namespace test cannot run: %s", why)
	}
	t.Skipf("network-namespace test skipped: %s", why)
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
	n := &NS{Name: fmt.Sprintf("mq%d-%d-%s", os.Getpid(), seq.Add(1), role)}
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command in the root namespace, failing t if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Run runs a command inside n, failing t if it fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Link joins n's interface ifn (address addr, CIDR) and peer's interface
// peerIfn (address peerAddr) with a veth pair.
func (n *NS) Link(t testing.TB, ifn, addr string, peer *NS, peerIfn, peerAddr string) {
	t.Helper()
	Run(t, "ip", "link", "add", ifn, "netns", n.Name, "type", "veth", "peer", "name", peerIfn, "netns", peer.Name)
	for _, s := range []struct {
		ns        *NS
		ifn, cidr string
	}{{n, ifn, addr}, {peer, peerIfn, peerAddr}} {
		for _, a := range strings.Split(s.cidr, ",") {
			s.ns.Run(t, "ip", "addr", "add", a, "dev", s.ifn, "nodad")
		}
		s.ns.Run(t, "ip", "link", "set", s.ifn, "up")
	}
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
