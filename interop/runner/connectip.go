package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/masqued/masqued/internal/netns"
)

// CONNECT-IP cells run in three network namespaces of their own (the
// runner's origins on loopback cannot be reached through a TUN device):
//
//	client  c0 10.77.1.2 ── s0 10.77.1.1  server: masqued -ip-pools (TUN 10.78.0.1, fd78::1)
//	                         s1 10.77.2.1 (egress, masquerade) ── o0 10.77.2.2  origin
//
// The client brings up its tunnel with a route to the origin's network;
// the cell then downloads ipPayloadSize bytes from the origin through it.
const (
	ipOrigin      = "10.77.2.2:8080"
	ipOriginNet   = "10.77.2.0/24"
	ipPools       = "10.78.0.0/24,fd78::/64"
	ipPayloadSize = 4 << 20
)

var ipEgress = netip.MustParseAddr("10.77.2.1")

var ipPayload = sync.OnceValue(func() []byte {
	b := make([]byte, ipPayloadSize)
	_, _ = rand.NewChaCha8([32]byte{'i', 'p'}).Read(b)
	return b
})

// connectIPCases are the CONNECT-IP (RFC 9484) cases.
var connectIPCases = []*testCase{
	{
		name: "connect-ip", needs: connectIP, opts: proxyOptions{ip: true},
		desc: "a device-wide tunnel (CONNECT-IP): the client's TUN device routes the origin's network through masqued, a TCP download of 4 MiB is checked by SHA-256, and the origin saw masqued's egress address (source NAT)",
		clients: map[string]runFunc{
			"masque-client/h3": vpnDownload, "masque-client/h2": vpnDownload, "connect-ip-go": vpnDownload,
		},
	},
	{
		name: "connect-ip-blocked", needs: connectIP | policy, opts: proxyOptions{ip: true, strict: true},
		desc: "CONNECT-IP to a private destination with a proxy that refuses them: the connection fails (ICMP administratively prohibited), and the origin sees nothing",
		clients: map[string]runFunc{
			"masque-client/h3": vpnBlocked, "masque-client/h2": vpnBlocked, "connect-ip-go": vpnBlocked,
		},
	},
}

// ipUnsupported says why this machine cannot play a CONNECT-IP case (no
// root or CAP_NET_ADMIN, no /dev/net/tun, no ip), or "".
func ipUnsupported(tc *testCase) string {
	if tc.needs&connectIP == 0 {
		return ""
	}
	if why := netns.Missing(); why != "" {
		return "CONNECT-IP cells need network namespaces: " + why
	}
	return ""
}

// ipNet is a CONNECT-IP cell's namespaces and origin.
type ipNet struct {
	client, server, origin *netns.NS
	ln                     net.Listener
	wg                     sync.WaitGroup
	mu                     sync.Mutex
	peers                  []netip.Addr
}

func newIPNet() (_ *ipNet, err error) {
	n := &ipNet{}
	defer func() {
		if err != nil {
			n.remove()
		}
	}()
	for _, ns := range []struct {
		p    **netns.NS
		role string
	}{{&n.client, "c"}, {&n.server, "s"}, {&n.origin, "o"}} {
		if *ns.p, err = netns.Make(ns.role); err != nil {
			return nil, err
		}
	}
	steps := []func() error{
		func() error { return n.client.Connect("c0", "10.77.1.2/24", n.server, "s0", "10.77.1.1/24") },
		func() error { return n.server.Connect("s1", "10.77.2.1/24", n.origin, "o0", "10.77.2.2/24") },
		func() error { _, err := n.client.Exec("ip", "route", "add", "default", "via", "10.77.1.1"); return err },
		func() error { _, err := n.origin.Exec("ip", "route", "add", "default", "via", "10.77.2.1"); return err },
		func() error {
			_, err := n.server.Exec("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
			return err
		},
		n.serveOrigin,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// serveOrigin serves ipPayload to every TCP connection to ipOrigin.
func (n *ipNet) serveOrigin() error {
	err := n.origin.Do(func() error {
		var err error
		n.ln, err = net.Listen("tcp", ipOrigin)
		return err
	})
	if err != nil {
		return err
	}
	n.wg.Go(func() {
		for {
			c, err := n.ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.peers = append(n.peers, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			n.mu.Unlock()
			n.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				_, _ = c.Write(ipPayload())
			})
		}
	})
	return nil
}

func (n *ipNet) originPeers() []netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.Addr(nil), n.peers...)
}

// remove stops the origin and removes the namespaces.
func (n *ipNet) remove() {
	if n.ln != nil {
		n.ln.Close()
		n.wg.Wait()
	}
	for _, ns := range []*netns.NS{n.client, n.server, n.origin} {
		if ns != nil {
			_ = ns.Remove()
		}
	}
}

// startMasquedIP starts masqued with CONNECT-IP in a cell's server
// namespace.
func startMasquedIP(ctx context.Context, c *cellRun, o proxyOptions) (*proxy, error) {
	n, err := newIPNet()
	if err != nil {
		return nil, err
	}
	c.cleanups = append(c.cleanups, n.remove)
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	args := []string{"netns", "exec", n.server.Name, c.env.bin["masqued"],
		"-listen", "10.77.1.1:0", "-cert-out", filepath.Join(c.dir, "cert.pem"), "-log-level", "info",
		"-ip-pools", ipPools, "-drain-timeout", "2s"}
	if !o.strict {
		args = append(args, "-allow-private-targets")
	}
	p, err := c.start(ctx, ip, append(args, c.env.masquedArgs...)...)
	if err != nil {
		return nil, err
	}
	addr, certFile, err := masquedLines(p)
	if err != nil {
		return nil, err
	}
	x := &proxy{url: "https://" + addr, certFile: certFile, egress: ipEgress, p: p, ip: n}
	if x.addr, err = netip.ParseAddrPort(addr); err != nil {
		return nil, err
	}
	return x, nil
}

// startVPN brings up the client's tunnel in the client namespace, routing
// the origin's network, and waits until it is up.
func startVPN(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", p.ip.client.Name}
	want := "vpn: "
	if cl.program == "connectipgo" {
		args = append(args, c.env.bin["connectipgo"], "-proxy", p.url, "-ca", p.certFile, "-routes", ipOriginNet)
		want = "up "
	} else {
		args = append(args, c.env.bin["masque-client"], "-proxy", p.url, "-ca", p.certFile, "-via", cl.transport,
			"vpn", "-tun", "mqc0", "-routes", ipOriginNet)
	}
	vp, err := c.start(ctx, ip, args...)
	if err != nil {
		return err
	}
	_, err = vp.Line(want)
	return err
}

// dialIPOrigin connects to the origin from the client namespace.
func dialIPOrigin(p *proxy) (net.Conn, error) {
	var conn net.Conn
	err := p.ip.client.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", ipOrigin, 10*time.Second)
		return err
	})
	return conn, err
}

// vpnDownload plays connect-ip: the download arrives whole, from the
// egress address.
func vpnDownload(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
	if err := startVPN(ctx, c, cl, p); err != nil {
		return err
	}
	conn, err := dialIPOrigin(p)
	if err != nil {
		return fmt.Errorf("connecting to the origin through the tunnel: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	h := sha256.New()
	nb, err := io.Copy(h, conn)
	if err != nil {
		return err
	}
	if want := sha256.Sum256(ipPayload()); nb != ipPayloadSize || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("got %d bytes with SHA-256 %x, want %d with %x", nb, h.Sum(nil), ipPayloadSize, want)
	}
	fmt.Fprintf(c.log, "-- %d bytes through CONNECT-IP, SHA-256 as sent\n", nb)
	peers := p.ip.originPeers()
	if len(peers) != 1 || peers[0] != p.egress {
		return fmt.Errorf("the origin saw connections from %v, want one from the egress address %s", peers, p.egress)
	}
	return nil
}

// vpnBlocked plays connect-ip-blocked: the connection fails and the origin
// sees nothing.
func vpnBlocked(ctx context.Context, c *cellRun, cl *client, p *proxy) error {
	if err := startVPN(ctx, c, cl, p); err != nil {
		return err
	}
	conn, err := dialIPOrigin(p)
	if err == nil {
		conn.Close()
		return errors.New("connected to a private destination through CONNECT-IP")
	}
	fmt.Fprintf(c.log, "-- connecting through the tunnel failed, as it should: %v\n", err)
	if peers := p.ip.originPeers(); len(peers) != 0 {
		return fmt.Errorf("the origin saw connections from %v, want none", peers)
	}
	return nil
}
