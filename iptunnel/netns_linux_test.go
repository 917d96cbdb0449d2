package iptunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	connectip "github.com/quic-go/connect-ip-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/yosida95/uritemplate/v3"
	"go.uber.org/goleak"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/netns"
	"github.com/masqued/masqued/internal/tun"
	"github.com/masqued/masqued/iptunnel"
	"github.com/masqued/masqued/tunnel"
)

// The test network, inside namespaces the test makes:
//
//	client ns  c0 10.77.1.2 ── s0 10.77.1.1  server ns (masqued, TUN 10.78.0.1 / fd78::1)
//	                            s1 10.77.2.1, 10.77.2.9 (egress) ── o0 10.77.2.2  origin ns
const (
	proxyAddr  = "10.77.1.1:4433"
	originIP   = "10.77.2.2"
	egressIP   = "10.77.2.9"
	originPort = "8080"
)

// fixedEgress selects egressIP for every client.
type fixedEgress struct{}

func (fixedEgress) SourceFor(*http.Request) tunnel.Source {
	return tunnel.Source{IPv4: netip.MustParseAddr(egressIP)}
}

type testNet struct {
	client, server, origin *netns.NS
	reg                    *prometheus.Registry
	ip                     *iptunnel.Server
	pool                   []byte // the proxy's certificate, PEM
}

type netOptions struct {
	allowPrivate bool
	quic         *quic.Config
}

// newTestNet builds the namespaces and runs masqued's CONNECT-IP in the
// server namespace.
func newTestNet(t *testing.T, o netOptions) *testNet {
	netns.Require(t)
	n := &testNet{client: netns.New(t, "c"), server: netns.New(t, "s"), origin: netns.New(t, "o"),
		reg: prometheus.NewPedanticRegistry()}
	n.client.Link(t, "c0", "10.77.1.2/24", n.server, "s0", "10.77.1.1/24")
	n.server.Link(t, "s1", "10.77.2.1/24,10.77.2.9/24", n.origin, "o0", "10.77.2.2/24")
	n.client.Run(t, "ip", "route", "add", "default", "via", "10.77.1.1")
	n.origin.Run(t, "ip", "route", "add", "default", "via", "10.77.2.1")
	n.server.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")

	cert, pem, err := certs.SelfSigned("10.77.1.1")
	if err != nil {
		t.Fatal(err)
	}
	n.pool = pem
	m, err := tunnel.NewMetrics(n.reg)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tunnel.New(tunnel.Config{Policy: tunnel.Policy{AllowPrivate: o.allowPrivate}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	err = n.server.Do(func() error {
		var err error
		n.ip, err = iptunnel.New(iptunnel.Config{
			Pools:      []netip.Prefix{netip.MustParsePrefix("10.78.0.0/24"), netip.MustParsePrefix("fd78::/64")},
			Egress:     fixedEgress{},
			Registerer: n.reg,
		})
		if err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", proxyAddr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.ip.Close(); err != nil {
			t.Error(err)
		}
	})
	srv := &h3proxy.Server{Proxy: proxy, IP: n.ip, QUICConfig: o.quic,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(pc)
	}()
	t.Cleanup(func() {
		srv.Close()
		pc.Close()
		<-done
	})
	return n
}

// vpn is a CONNECT-IP client in the client namespace: connect-ip-go over
// one QUIC connection, and a TUN device with the assigned addresses and a
// route to the origin's network.
type vpn struct {
	conn  *connectip.Conn
	addrs []connectip.AssignedAddress
	dev   *tun.Device
	wg    sync.WaitGroup
}

func (n *testNet) dialConn(t *testing.T) (*connectip.Conn, error) {
	pool, err := certs.Pool(n.pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var qc *quic.Conn
	err = n.client.Do(func() error {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		t.Cleanup(func() { udp.Close() })
		raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(proxyAddr))
		qc, err = quic.Dial(ctx, udp, raddr, &tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
			&quic.Config{EnableDatagrams: true, InitialPacketSize: 1350})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	cc := connectip.NewClientConn((&http3.Transport{EnableDatagrams: true}).NewClientConn(qc))
	req, err := connectip.NewRequest(ctx, uritemplate.MustNew("https://"+proxyAddr+"/.well-known/masque/ip/*/*/"))
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := cc.Dial(req)
	return conn, err
}

func (n *testNet) dialVPN(t *testing.T) *vpn {
	conn, err := n.dialConn(t)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := &vpn{conn: conn}
	if v.addrs, err = conn.ReceiveAddressAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Routes(ctx); err != nil {
		t.Fatal(err)
	}
	err = n.client.Do(func() error {
		var err error
		if v.dev, err = tun.Open("mqc"); err != nil {
			return err
		}
		var ps []netip.Prefix
		for _, a := range v.addrs {
			ps = append(ps, a.IPPrefix)
		}
		if err := v.dev.Up(1280, ps...); err != nil {
			return err
		}
		return v.dev.AddRoute(netip.MustParsePrefix("10.77.2.0/24"))
	})
	if err != nil {
		t.Fatal(err)
	}
	v.wg.Go(func() { // device to tunnel
		b := make([]byte, 2000)
		for {
			n, err := v.dev.Read(b)
			if err != nil {
				return
			}
			if icmpPkt, err := v.conn.WritePacket(b[:n]); err == nil && len(icmpPkt) > 0 {
				_, _ = v.dev.Write(icmpPkt)
			}
		}
	})
	v.wg.Go(func() { // tunnel to device
		b := make([]byte, 2000)
		for {
			n, err := v.conn.ReadPacket(b)
			if err != nil {
				return
			}
			_, _ = v.dev.Write(b[:n])
		}
	})
	t.Cleanup(func() {
		v.conn.Close()
		v.dev.Close()
		v.wg.Wait()
	})
	return v
}

// origin serves size pseudo-random bytes to each TCP connection and
// records where they came from.
type origin struct {
	data  []byte
	mu    sync.Mutex
	peers []netip.Addr
}

func (n *testNet) startOrigin(t *testing.T, size int) *origin {
	o := &origin{data: make([]byte, size)}
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(o.data)
	var ln net.Listener
	if err := n.origin.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(originIP, originPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.peers = append(o.peers, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			o.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = c.Write(o.data)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return o
}

// dialOrigin connects to the origin from the client namespace.
func (n *testNet) dialOrigin() (net.Conn, error) {
	var c net.Conn
	err := n.client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(originIP, originPort), 5*time.Second)
		return err
	})
	return c, err
}

func (n *testNet) dropped(t *testing.T, reason string) float64 {
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "masqued_ip_packets_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestNetnsDownloadAndPing(t *testing.T) {
	n := newTestNet(t, netOptions{allowPrivate: true})
	o := n.startOrigin(t, 8<<20)
	v := n.dialVPN(t)
	var got4, got6 bool
	for _, a := range v.addrs {
		got4 = got4 || a.IPPrefix.Addr().Is4()
		got6 = got6 || a.IPPrefix.Addr().Is6()
	}
	if !got4 || !got6 {
		t.Fatalf("assigned %v, want an IPv4 and an IPv6 address", v.addrs)
	}

	t.Run("ping", func(t *testing.T) {
		var pc *icmp.PacketConn
		if err := n.client.Do(func() error {
			var err error
			pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		msg, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 7, Seq: 1, Data: []byte("masqued")}}).Marshal(nil)
		dst := &net.IPAddr{IP: net.ParseIP(originIP)}
		buf := make([]byte, 1500)
		for try := 0; ; try++ {
			if _, err := pc.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := pc.ReadFrom(buf)
			if err == nil {
				m, err := icmp.ParseMessage(1, buf[:n])
				if err == nil && m.Type == ipv4.ICMPTypeEchoReply && from.String() == originIP {
					return
				}
				continue
			}
			if try == 3 {
				t.Fatalf("no echo reply from %s: %v", originIP, err)
			}
		}
	})

	t.Run("tcp-download", func(t *testing.T) {
		c, err := n.dialOrigin()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		nb, err := io.Copy(h, c)
		if err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256(o.data); nb != int64(len(o.data)) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("downloaded %d bytes with the wrong checksum, want %d", nb, len(o.data))
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.peers) == 0 || o.peers[len(o.peers)-1].String() != egressIP {
			t.Fatalf("origin saw %v, want the egress address %s", o.peers, egressIP)
		}
	})
}

func TestNetnsPrivateDestinationDropped(t *testing.T) {
	n := newTestNet(t, netOptions{allowPrivate: false})
	o := n.startOrigin(t, 1024)
	n.dialVPN(t)
	c, err := n.dialOrigin()
	if err == nil {
		c.Close()
		t.Fatal("connected to a private destination through CONNECT-IP")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Logf("dial timed out rather than being refused by ICMP: %v", err)
	}
	if got := n.dropped(t, "prohibited"); got == 0 {
		t.Fatal("no packet counted as dropped for the policy")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.peers) != 0 {
		t.Fatalf("origin saw connections from %v", o.peers)
	}
}

// TestNetnsMTUBelow1280 runs the proxy on a QUIC path too small for
// 1280-byte packets: RFC 9484 §10.1 has it end the tunnel.
func TestNetnsMTUBelow1280(t *testing.T) {
	n := newTestNet(t, netOptions{allowPrivate: true, quic: &quic.Config{
		InitialPacketSize: 1200, DisablePathMTUDiscovery: true, EnableDatagrams: true}})
	conn, err := n.dialConn(t)
	if err != nil {
		// The probe follows the 2xx at once, so the stream's reset may
		// reach the client before the response does.
		if !strings.Contains(err.Error(), "H3_REQUEST_CANCELLED") {
			t.Fatalf("dial failed, but not by the stream's reset: %v", err)
		}
		return
	}
	defer conn.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.ReadPacket(make([]byte, 2000))
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("tunnel carried a packet on a path below 1280 bytes")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel still open on a path below 1280 bytes")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
