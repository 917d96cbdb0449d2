// Package iptunneltest builds CONNECT-IP test networks: three network
// namespaces that a test makes and removes (internal/netns), with masqued's
// CONNECT-IP (HTTP/3, and HTTP/2 on TCP) in the middle one and an origin in
// the last:
//
//	client  c0 10.77.1.2 ── s0 10.77.1.1  server (TUN 10.78.0.1, fd78::1)
//	                         s1 10.77.2.1, 10.77.2.9 (egress) ── o0 10.77.2.2  origin
//
// Nothing leaves those namespaces.
package iptunneltest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/masqued/masqued/h2proxy"
	"github.com/masqued/masqued/h3proxy"
	"github.com/masqued/masqued/internal/certs"
	"github.com/masqued/masqued/internal/netns"
	"github.com/masqued/masqued/iptunnel"
	"github.com/masqued/masqued/tunnel"
)

// The test network's addresses.
const (
	ProxyAddr   = "10.77.1.1:4433" // UDP (HTTP/3) and TCP (HTTP/2)
	OriginIP    = "10.77.2.2"
	EgressIP    = "10.77.2.9" // the egress selector's choice, for every client
	OriginPort  = "8080"      // TCP: a download; UDP: HTTP/3 (StartH3Origin)
	OriginNet   = "10.77.2.0/24"
	ServerHopIP = "10.77.1.1"
)

// fixedEgress selects EgressIP for every client.
type fixedEgress struct{}

func (fixedEgress) SourceFor(*http.Request) tunnel.Source {
	return tunnel.Source{IPv4: netip.MustParseAddr(EgressIP)}
}

// nsDialer dials the CONNECT and CONNECT-UDP targets from the server
// namespace, where the proxy's sockets belong. It dials the first address
// only, on the calling thread: tunnel.NetDialer's Happy Eyeballs makes its
// sockets on goroutines of their own, outside the namespace.
type nsDialer struct{ ns *netns.NS }

func (d nsDialer) Dial(ctx context.Context, network string, addrs []netip.AddrPort, _ *http.Request) (net.Conn, error) {
	var c net.Conn
	err := d.ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addrs[0].String())
		return err
	})
	return c, err
}

// Net is a test network with masqued serving CONNECT-IP.
type Net struct {
	Client, Server, Origin *netns.NS
	Registry               *prometheus.Registry
	IP                     *iptunnel.Server
	CertPEM                []byte // the proxy's certificate
}

// Options vary the proxy.
type Options struct {
	AllowPrivate bool         // tunnel.Policy.AllowPrivate
	QUIC         *quic.Config // the HTTP/3 front's; nil = its default
	H2           bool         // also serve HTTP/2 on TCP (the test binary needs extended CONNECT on)
	Auth         tunnel.Authenticator
}

// New builds the network; it is removed when t ends. Without
// CAP_NET_ADMIN, t is skipped (failed where CI=true).
func New(t testing.TB, o Options) *Net {
	netns.Require(t)
	n := &Net{Client: netns.New(t, "c"), Server: netns.New(t, "s"), Origin: netns.New(t, "o"),
		Registry: prometheus.NewPedanticRegistry()}
	n.Client.Link(t, "c0", "10.77.1.2/24", n.Server, "s0", "10.77.1.1/24")
	n.Server.Link(t, "s1", "10.77.2.1/24,"+EgressIP+"/24", n.Origin, "o0", OriginIP+"/24")
	n.Client.Run(t, "ip", "route", "add", "default", "via", ServerHopIP)
	n.Origin.Run(t, "ip", "route", "add", "default", "via", "10.77.2.1")
	n.Server.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")

	cert, pem, err := certs.SelfSigned(ServerHopIP)
	if err != nil {
		t.Fatal(err)
	}
	n.CertPEM = pem
	m, err := tunnel.NewMetrics(n.Registry)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tunnel.New(tunnel.Config{Policy: tunnel.Policy{AllowPrivate: o.AllowPrivate}, Metrics: m,
		Dialer: nsDialer{n.Server}, Auth: o.Auth})
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	var tl net.Listener
	err = n.Server.Do(func() error {
		var err error
		n.IP, err = iptunnel.New(iptunnel.Config{
			Pools:      []netip.Prefix{netip.MustParsePrefix("10.78.0.0/24"), netip.MustParsePrefix("fd78::/64")},
			Egress:     fixedEgress{},
			Registerer: n.Registry,
		})
		if err != nil {
			return err
		}
		if pc, err = net.ListenPacket("udp", ProxyAddr); err != nil {
			return err
		}
		if o.H2 {
			tl, err = net.Listen("tcp", ProxyAddr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.IP.Close(); err != nil {
			t.Error(err)
		}
	})
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	h3 := &h3proxy.Server{Proxy: proxy, IP: n.IP, QUICConfig: o.QUIC, TLSConfig: tlsConf}
	serve(t, func() error { return h3.Serve(pc) }, func() { h3.Close(); pc.Close() })
	if tl != nil {
		h2 := &h2proxy.Server{Proxy: proxy, IP: n.IP, TLSConfig: tlsConf}
		serve(t, func() error { return h2.Serve(tl) }, func() { h2.Close(); tl.Close() })
	}
	return n
}

func serve(t testing.TB, serve func() error, stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve()
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

// Origin serves Data to each TCP connection and records its peers.
type Origin struct {
	Data  []byte
	mu    sync.Mutex
	peers []netip.Addr
}

// StartOrigin starts an origin serving size pseudo-random bytes on
// OriginIP:OriginPort (TCP).
func (n *Net) StartOrigin(t testing.TB, size int) *Origin {
	o := &Origin{Data: make([]byte, size)}
	_, _ = rand.NewChaCha8([32]byte{1}).Read(o.Data)
	var ln net.Listener
	if err := n.Origin.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(OriginIP, OriginPort))
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
				_, _ = c.Write(o.Data)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return o
}

// Peers returns the addresses connections came from.
func (o *Origin) Peers() []netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]netip.Addr(nil), o.peers...)
}

// DialOrigin connects to the origin from the client namespace.
func (n *Net) DialOrigin() (net.Conn, error) {
	var c net.Conn
	err := n.Client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(OriginIP, OriginPort), 5*time.Second)
		return err
	})
	return c, err
}

// CheckDownload downloads from the origin through whatever routes the
// client namespace has, checks the bytes and that the origin saw the egress
// address.
func (n *Net) CheckDownload(t testing.TB, o *Origin) {
	t.Helper()
	c, err := n.DialOrigin()
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
	if want := sha256.Sum256(o.Data); nb != int64(len(o.Data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("downloaded %d bytes with the wrong checksum, want %d", nb, len(o.Data))
	}
	if p := o.Peers(); len(p) == 0 || p[len(p)-1].String() != EgressIP {
		t.Fatalf("origin saw %v, want the egress address %s", p, EgressIP)
	}
}

// Ping sends ICMP echo requests from the client namespace to the origin
// until one is answered, a few tries at most.
func (n *Net) Ping(t testing.TB) {
	t.Helper()
	var pc *icmp.PacketConn
	if err := n.Client.Do(func() error {
		var err error
		pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msg, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 7, Seq: 1, Data: []byte("masqued")}}).Marshal(nil)
	dst := &net.IPAddr{IP: net.ParseIP(OriginIP)}
	buf := make([]byte, 1500)
	for try := 0; try < 4; try++ {
		if _, err := pc.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			nb, from, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if m, err := icmp.ParseMessage(1, buf[:nb]); err == nil && m.Type == ipv4.ICMPTypeEchoReply && from.String() == OriginIP {
				return
			}
		}
	}
	t.Fatalf("no echo reply from %s", OriginIP)
}

// Dropped is the value of masqued_ip_packets_dropped_total{reason}.
func (n *Net) Dropped(t testing.TB, reason string) float64 {
	return n.Counter(t, "masqued_ip_packets_dropped_total", "reason", reason)
}

// Counter is the sum of the counters name whose label key is value.
func (n *Net) Counter(t testing.TB, name, key, value string) float64 {
	t.Helper()
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == key && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// ProxyURL is the proxy's URL.
func ProxyURL() string { return fmt.Sprintf("https://%s", ProxyAddr) }

// WaitContext is a context for a test step: 10 seconds.
func WaitContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
