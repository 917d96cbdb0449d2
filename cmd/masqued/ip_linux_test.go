package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/masqued/masqued/internal/netns"
)

// TestIPPools runs masqued with CONNECT-IP in a namespace of the test's
// own: it starts, makes its device and NAT tables, and removes both when it
// stops.
func TestIPPools(t *testing.T) {
	netns.Require(t)
	bin := buildMasqued(t)
	n := netns.New(t, "ip")
	n.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, ip, "netns", "exec", n.Name, bin, "-listen", "127.0.0.1:0", "-ip-pools", "10.78.0.0/24,fd78::/64", "-ip-device", "mqtest")
	p.line(t, "listening on ")
	if out := n.Run(t, "ip", "addr", "show", "mqtest"); !strings.Contains(out, "10.78.0.1/24") || !strings.Contains(out, "fd78::1/64") {
		t.Fatalf("device addresses:\n%s", out)
	}
	if out := n.Run(t, "nft", "list", "tables"); !strings.Contains(out, "masqued_mqtest") {
		t.Fatalf("no NAT tables:\n%s", out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("masqued exited with %v\n%s", err, p.log(t))
	}
	if out := n.Run(t, "ip", "link", "show"); strings.Contains(out, "mqtest") {
		t.Fatalf("device left behind:\n%s", out)
	}
	if out := n.Run(t, "nft", "list", "tables"); strings.Contains(out, "masqued_") {
		t.Fatalf("NAT tables left behind:\n%s", out)
	}
}

// TestIPPoolsWithoutCapability runs masqued -ip-pools as an unprivileged
// user without capabilities: it exits 1, naming CAP_NET_ADMIN.
func TestIPPoolsWithoutCapability(t *testing.T) {
	netns.Require(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is missing")
	}
	built := buildMasqued(t)
	dir, err := os.MkdirTemp("", "masqued-nocap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "masqued")
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	n := netns.New(t, "nocap")
	n.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	cmd := exec.Command("ip", "netns", "exec", n.Name, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", bin, "-listen", "127.0.0.1:0", "-ip-pools", "10.78.0.0/24",
		"-cert-out", filepath.Join(dir, "cert.pem"))
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+dir)
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Fatalf("exit %d, want 1 with a line naming CAP_NET_ADMIN:\n%s", exitCode(err), out)
	}
	t.Logf("%s", out)
}
