// Package netns builds small throw-away networks of Linux network namespaces
// for tests that need hosts of their own: each namespace is a host with its
// own interfaces, addresses, routes and ports, joined to the others by veth
// pairs, so a test can place a client, proxies and an origin on separate
// addresses and see what each of them really sees. It drives iproute2's ip
// (ip netns, ip link, ip addr) and runs programs inside a namespace with
// ip netns exec, so no thread of the test process ever changes namespace.
//
// Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); Require
// skips a test that cannot. Everything is torn down at the test's cleanup,
// also when it fails; names are random, so parallel runs never clash.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// cmdTimeout bounds one ip command: they take milliseconds, so only a hang
// reaches it.
const cmdTimeout = 30 * time.Second

var (
	checkOnce sync.Once
	checkErr  error
)

// Check reports whether this process can create network namespaces: it
// needs iproute2's ip, and the rights to run ip netns add (root). It tries
// once per process, with a namespace it deletes at once.
func Check() error {
	checkOnce.Do(func() {
		if _, err := exec.LookPath("ip"); err != nil {
			checkErr = errors.New("no ip command (Debian package iproute2)")
			return
		}
		name := "masqued-probe-" + randomHex()
		if err := ip("netns", "add", name); err != nil {
			checkErr = fmt.Errorf("cannot create a network namespace (needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN; running as uid %d): %w", os.Geteuid(), err)
			return
		}
		checkErr = ip("netns", "del", name)
	})
	return checkErr
}

// Require skips t unless Check passes, or fails it where CI=true: CI runs
// as root, so a namespace test that cannot run there is a broken set-up,
// not a reason to pass.
func Require(t testing.TB) {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are unavailable under CI=true: %v", err)
		}
		t.Skipf("skipped: this test builds network namespaces, and %v", err)
	}
}

// Namespace is a network namespace of the test's, with its loopback up and
// no other interface until Link adds one. Its methods are safe for
// concurrent use.
type Namespace struct {
	name string // under /run/netns
	role string // what the test calls it, for interface names and messages
}

// New creates a namespace for role (such as "relay"; a few lowercase letters,
// since interface names are made from it) and deletes it at t's cleanup,
// after the cleanups registered later, such as those of processes inside.
func New(t testing.TB, role string) *Namespace {
	t.Helper()
	Require(t)
	n := &Namespace{name: "masqued-" + role + "-" + randomHex(), role: role}
	if err := ip("netns", "add", n.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ip("netns", "del", n.name); err != nil {
			t.Errorf("deleting the %s namespace: %v", role, err)
		}
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Name is the namespace's name, as ip netns lists it.
func (n *Namespace) Name() string { return n.name }

// String is the namespace's role and name, for messages.
func (n *Namespace) String() string { return n.role + " (" + n.name + ")" }

// IP runs ip -n NAME args (ip link ..., ip addr ..., ip route ...) in the
// namespace and fails t if it fails.
func (n *Namespace) IP(t testing.TB, args ...string) {
	t.Helper()
	if err := ip(append([]string{"-n", n.name}, args...)...); err != nil {
		t.Fatal(err)
	}
}

// AddAddr adds address p (address and prefix length, 10.200.3.11/24) to
// interface dev.
func (n *Namespace) AddAddr(t testing.TB, dev string, p netip.Prefix) {
	t.Helper()
	n.IP(t, "addr", "add", p.String(), "dev", dev)
}

// Exec returns what runs program path with args inside the namespace:
// ip netns exec replaces itself with the program, which keeps ip's process,
// so signals sent to it reach the program. Pass the result to exec.Command
// or to internal/proc.Start.
func (n *Namespace) Exec(path string, args ...string) (name string, withArgs []string) {
	return "ip", append([]string{"netns", "exec", n.name, path}, args...)
}

// Command is Exec as an *exec.Cmd, ended with ctx.
func (n *Namespace) Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	name, args := n.Exec(path, args...)
	return exec.CommandContext(ctx, name, args...)
}

// Link joins a and b with a veth pair, up, with address aAddr on a's end and
// bAddr on b's (10.200.1.1/24 and 10.200.1.2/24: one subnet, so each end
// reaches the other without a route). The end in a is named "to-" and b's
// role, the one in b "to-" and a's; it returns those names. The pair goes
// with the namespaces.
func Link(t testing.TB, a *Namespace, aAddr netip.Prefix, b *Namespace, bAddr netip.Prefix) (aDev, bDev string) {
	t.Helper()
	aDev, bDev = ifName(b.role), ifName(a.role)
	a.IP(t, "link", "add", aDev, "type", "veth", "peer", "name", bDev, "netns", b.name)
	for _, end := range []struct {
		ns   *Namespace
		dev  string
		addr netip.Prefix
	}{{a, aDev, aAddr}, {b, bDev, bAddr}} {
		end.ns.AddAddr(t, end.dev, end.addr)
		end.ns.IP(t, "link", "set", end.dev, "up")
	}
	return aDev, bDev
}

// ifName is the interface name toward role, cut to Linux's 15 bytes.
func ifName(role string) string {
	s := "to-" + role
	return s[:min(len(s), 15)]
}

// ip runs iproute2's ip with args; its error holds what ip printed.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// randomHex is 8 random hex digits: unique enough among parallel runs.
func randomHex() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
