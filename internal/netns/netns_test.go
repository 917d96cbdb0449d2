package netns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/masqued/masqued/internal/netns"
)

// TestMain doubles as a program that dials inside a namespace: the test
// binary, run as "TEST-BINARY dial ADDR" under ip netns exec, prints what a
// TCP dial of ADDR from there returned.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "dial" {
		c, err := net.DialTimeout("tcp", os.Args[2], 5*time.Second)
		if err == nil {
			c.Close()
		}
		fmt.Println(err)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// dial dials addr over TCP from inside ns and returns the error it got.
func dial(t *testing.T, ns *netns.NS, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, os.Args[0], "dial", addr).CombinedOutput()
	if err != nil {
		t.Fatalf("dialing from %s: %v\n%s", ns, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestLink: two linked namespaces reach each other (a dial to a closed port
// is refused by the other end, not lost), a third subnet is unreachable, and
// the namespaces are gone after the cleanup.
func TestLink(t *testing.T) {
	netns.Require(t)
	var names []string
	t.Run("linked", func(t *testing.T) {
		a, b := netns.New(t, "a"), netns.New(t, "b")
		names = []string{a.Name, b.Name}
		a.Link(t, "to-b", "10.200.9.1/24", b, "to-a", "10.200.9.2/24")
		if got := dial(t, a, "10.200.9.2:9"); !strings.Contains(got, "connection refused") {
			t.Errorf("a dialing b's closed port: %s, want connection refused", got)
		}
		if got := dial(t, b, "10.200.10.1:9"); !strings.Contains(got, "network is unreachable") {
			t.Errorf("b dialing a subnet it has no route to: %s, want network is unreachable", got)
		}
	})
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s is still there after the cleanup:\n%s", n, out)
		}
	}
}
